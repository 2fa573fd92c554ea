"""Per-file metadata (one Parquet row per audio file) and the dataset fingerprint.

The rows' schema is `audiotag.data.schemas.METADATA_SCHEMA`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from audiotag.config import SILENCE_TOP_DB
from audiotag.data.layout import AUDIO_DIRS, SUBSETS, read_subset
from audiotag.data.schemas import METADATA_SCHEMA
from audiotag.features.audio import AudioReadError, find_nonsilent, read_audio
from audiotag.storage import write_parquet_atomic

UNLISTED_ERROR = "unlisted: no CSV names this file"


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


def describe_file(
    data_dir: Path,
    fname: str,
    subset: str,
    labels: Iterable[str],
    silence_top_db: float = SILENCE_TOP_DB,
) -> dict:
    """One metadata row; read errors are recorded in ``error``, never raised.

    Args:
        data_dir: the dataset directory (FAT2019 layout).
        fname: the file's name in its subset's folder.
        subset: ``curated``, ``noisy`` or ``test``.
        labels: the file's labels from its CSV.
        silence_top_db: frames this many dB below the loudest are silence; the
            flow passes ``config.mel.silence_top_db``. Recorded in the row.
    """
    row = _empty_row(fname, subset, labels)
    path = data_dir / row["path"]
    try:
        st = path.stat()
    except OSError:
        row["error"] = "missing: no such file"
        return row
    row.update(file_size=st.st_size, mtime_ns=st.st_mtime_ns)
    try:
        raw = path.read_bytes()
        row["sha1"] = hashlib.sha1(raw).hexdigest()
        info = sf.info(str(path))
        row.update(
            sample_rate=int(info.samplerate),
            channels=int(info.channels),
            sample_format=str(info.subtype),
        )
        samples, sr = read_audio(path)
    except AudioReadError as err:
        row["error"] = err.problem
        return row
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        row["error"] = f"unreadable audio ({err})"
        return row
    intervals = find_nonsilent(samples, silence_top_db)
    row.update(
        frames=len(samples),
        duration=len(samples) / sr,
        peak_db=_db(float(np.abs(samples).max())),
        rms_db=_db(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))),
        nonsilent=[{"start": int(s), "end": int(e)} for s, e in intervals],
        nonsilent_duration=float((intervals[:, 1] - intervals[:, 0]).sum() / sr),
        silence_top_db=float(silence_top_db),
    )
    return row


def _is_reusable(prev: dict | None, path: Path, silence_top_db: float) -> bool:
    """Whether a previous row still describes the file: same size and mtime, read
    without error, and its non-silent intervals found at the same threshold."""
    if prev is None or prev["error"] is not None:
        return False
    # Rows written before the threshold was recorded lack it: they are re-read.
    if prev.get("silence_top_db") != float(silence_top_db):
        return False
    try:
        st = path.stat()
    except OSError:
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
                row.update(error=UNLISTED_ERROR, file_size=path.stat().st_size)
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
            if _is_reusable(prev, data_dir / AUDIO_DIRS[subset] / item.fname, silence_top_db):
                rows.append({**prev, "labels": list(item.labels)})
            else:
                todo.append((len(rows), item.fname, subset, item.labels))
                rows.append(None)
    named = {(r["subset"], r["fname"]) for r in rows if r is not None}
    named |= {(subset, fname) for _, fname, subset, _ in todo}
    rows += _unlisted_rows(data_dir, named)

    def work(job: tuple[int, str, str, tuple[str, ...]]) -> tuple[int, dict]:
        i, fname, subset, labels = job
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
