"""Per-file metadata (one Parquet row per audio file) and the dataset fingerprint.

The rows' schema is `audiotag.data.schemas.METADATA_SCHEMA`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audiotag.config import SILENCE_TOP_DB
from audiotag.data.layout import AUDIO_DIRS, SUBSETS, LabelledFile, read_subset
from audiotag.data.schemas import METADATA_SCHEMA
from audiotag.features.audio import (
    BLOCK_FRAMES,
    NO_SUCH_FILE,
    AudioReadError,
    SilenceScan,
    check_regular_file,
    open_audio,
    open_regular_file,
    sndfile_problem,
)
from audiotag.stopping import check_stop
from audiotag.storage import write_parquet_atomic

UNLISTED_ERROR = "unlisted: no CSV names this file"
# A row's error starts with its rejection reason (`audiotag.data.filtering`).
MISSING_ERROR = f"missing: {NO_SUCH_FILE}"
OUTSIDE_PREFIX = "outside_dataset"
NOT_REGULAR_PREFIX = "not_a_regular_file"


def _db(x: float) -> float:
    return float(20.0 * np.log10(max(x, 1e-10)))


def _empty_row(fname: str, subset: str, labels: Iterable[str]) -> dict:
    row: dict = {name: None for name in METADATA_SCHEMA.names}
    row.update(
        fname=fname,
        subset=subset,
        labels=list(labels),
        path=f"{AUDIO_DIRS[subset]}/{fname}",
        nonsilent=[],
    )
    return row


def check_dataset_file(data_dir: Path, subset: str, fname: str) -> tuple[Path, os.stat_result]:
    """The real path and ``os.stat`` of a file a CSV names, decided without opening it.

    The name, with every link followed, must reach a regular file inside its subset's
    folder (itself resolved): ``../../x.wav``, ``/etc/passwd`` and a link out of the
    folder are refused, and so are FIFOs, devices, sockets and directories.

    Raises:
        AudioReadError: its ``problem`` starts with the reason: ``missing``,
            ``outside_dataset`` or ``not_a_regular_file``.
    """
    folder = Path(os.path.realpath(data_dir / AUDIO_DIRS[subset]))
    # realpath, not Path.resolve: a loop of links is left for the stat to name.
    real = Path(os.path.realpath(data_dir / AUDIO_DIRS[subset] / fname))
    if not real.is_relative_to(folder) or real == folder:
        raise AudioReadError(
            fname, f"{OUTSIDE_PREFIX}: resolves outside {AUDIO_DIRS[subset]}/ (links followed)"
        )
    try:
        return real, check_regular_file(real)
    except AudioReadError as err:
        if err.problem == NO_SUCH_FILE:
            raise AudioReadError(fname, MISSING_ERROR) from None
        raise AudioReadError(fname, f"{NOT_REGULAR_PREFIX}: {err.problem}") from None


def describe_file(
    data_dir: Path,
    fname: str,
    subset: str,
    labels: Iterable[str],
    silence_top_db: float = SILENCE_TOP_DB,
    block_frames: int = BLOCK_FRAMES,
) -> dict:
    """One metadata row; read errors are recorded in ``error``, never raised.

    The file is read in blocks (hashed, then decoded ``block_frames`` at a time), so a
    long recording takes a block's memory, not its length's.

    Args:
        data_dir: the dataset directory (FAT2019 layout).
        fname: the file's name in its subset's folder.
        subset: ``curated``, ``noisy`` or ``test``.
        labels: the file's labels from its CSV.
        silence_top_db: frames this many dB below the loudest are silence; the
            flow passes ``config.mel.silence_top_db``. Recorded in the row.
        block_frames: audio frames decoded at a time.
    """
    row = _empty_row(fname, subset, labels)
    try:
        path, st = check_dataset_file(data_dir, subset, fname)
    except AudioReadError as err:
        row["error"] = err.problem
        return row
    row.update(file_size=st.st_size, mtime_ns=st.st_mtime_ns)
    try:
        with open_regular_file(path) as f:
            row["sha1"] = hashlib.file_digest(f, "sha1").hexdigest()
        scan, sr = _scan_file(path, row, block_frames)
    except AudioReadError as err:
        row["error"] = err.problem
        return row
    except OSError as err:
        row["error"] = f"unreadable audio ({sndfile_problem(err)})"
        return row
    intervals = scan.nonsilent(silence_top_db)
    row.update(
        frames=scan.length,
        duration=scan.length / sr,
        peak_db=_db(scan.peak),
        rms_db=_db(scan.rms),
        nonsilent=[{"start": int(s), "end": int(e)} for s, e in intervals],
        nonsilent_duration=float((intervals[:, 1] - intervals[:, 0]).sum() / sr),
        silence_top_db=float(silence_top_db),
    )
    return row


def _scan_file(path: Path, row: dict, block_frames: int) -> tuple[SilenceScan, int]:
    """Decodes a file in blocks into a `SilenceScan`; its header's facts go into ``row``
    first (a file whose header reads and whose audio does not keeps them)."""
    with open_audio(path) as audio:
        row.update(
            sample_rate=audio.samplerate,
            channels=int(audio.channels),
            sample_format=str(audio.subtype),
        )
        scan = SilenceScan()
        for block in audio.blocks(block_frames):
            scan.add(block)
    return scan, audio.samplerate


def _is_reusable(prev: dict | None, data_dir: Path, item: LabelledFile, top_db: float) -> bool:
    """Whether a previous row still describes the file: same size and mtime, read
    without error, its non-silent intervals found at the same threshold, and the
    name still reaching a regular file inside its folder."""
    if prev is None or prev["error"] is not None:
        return False
    # Rows written before the threshold was recorded lack it: they are re-read.
    if prev.get("silence_top_db") != float(top_db):
        return False
    try:
        _, st = check_dataset_file(data_dir, item.subset, item.fname)
    except AudioReadError:
        return False
    return prev["file_size"] == st.st_size and prev["mtime_ns"] == st.st_mtime_ns


def _unlisted_rows(data_dir: Path, named: set[tuple[str, str]]) -> list[dict]:
    """Rows for the audio files that no CSV names: recorded (and rejected), never lost."""
    rows = []
    for subset in SUBSETS:
        folder = data_dir / AUDIO_DIRS[subset]
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if (
                path.is_file()
                and not path.name.startswith(".")
                and (subset, path.name) not in named
            ):
                row = _empty_row(path.name, subset, [])
                row["error"] = UNLISTED_ERROR
                try:  # the size of a file inside the folder only (not a link's target)
                    row["file_size"] = check_dataset_file(data_dir, subset, path.name)[1].st_size
                except AudioReadError:
                    pass
                rows.append(row)
    return rows


def extract_metadata(
    data_dir: Path,
    out_path: Path,
    silence_top_db: float = SILENCE_TOP_DB,
    workers: int = 2,
) -> Path:
    """Writes ``metadata.parquet``: one row per file the CSVs name, in CSV order.

    Incremental: a file whose size and mtime match its row in the previous
    ``out_path``, and whose row was made at the same ``silence_top_db``, keeps
    its row and is not read again.

    Args:
        data_dir: the dataset directory (FAT2019 layout).
        out_path: where to write the table (atomically).
        silence_top_db: the silence threshold; the flow passes
            ``config.mel.silence_top_db``.
        workers: threads that read files.
    """
    previous: dict[tuple[str, str], dict] = {}
    if out_path.exists():
        for row in pq.read_table(out_path).to_pylist():
            previous[(row["subset"], row["fname"])] = row

    todo: list[tuple[int, str, str, tuple[str, ...]]] = []
    rows: list[dict | None] = []
    for subset in SUBSETS:
        for item in read_subset(data_dir, subset):
            prev = previous.get((subset, item.fname))
            if _is_reusable(prev, data_dir, item, silence_top_db):
                rows.append({**prev, "labels": list(item.labels)})
            else:
                todo.append((len(rows), item.fname, subset, item.labels))
                rows.append(None)
    named = {(r["subset"], r["fname"]) for r in rows if r is not None}
    named |= {(subset, fname) for _, fname, subset, _ in todo}
    rows += _unlisted_rows(data_dir, named)

    def work(job: tuple[int, str, str, tuple[str, ...]]) -> tuple[int, dict]:
        i, fname, subset, labels = job
        check_stop("extracting metadata")
        return i, describe_file(data_dir, fname, subset, labels, silence_top_db)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, row in pool.map(work, todo):
            rows[i] = row
    table = pa.Table.from_pylist(rows, schema=METADATA_SCHEMA)
    write_parquet_atomic(table, out_path)
    return out_path


def dataset_fingerprint(metadata_path: Path) -> str:
    """Hash of the files' contents, subsets and labels: what determines training data."""
    table = pq.read_table(metadata_path, columns=["subset", "fname", "sha1", "labels"])
    h = hashlib.sha256()
    for row in table.to_pylist():
        h.update(
            f"{row['subset']}/{row['fname']}:{row['sha1']}:{','.join(row['labels'])}\n".encode()
        )
    return h.hexdigest()[:16]
