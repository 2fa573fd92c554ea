"""Per-file metadata (one Parquet row per audio file), filtering, dataset fingerprint.

The Parquet schemas are defined here and nowhere else.
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

from audiotag.data.layout import AUDIO_DIRS, KAGGLE_CORRUPT_FILES, SUBSETS, read_subset
from audiotag.features.audio import AudioReadError, find_nonsilent, read_audio
from audiotag.storage import write_parquet_atomic

INTERVAL = pa.struct([("start", pa.int64()), ("end", pa.int64())])

METADATA_SCHEMA = pa.schema(
    [
        ("fname", pa.string()),
        ("subset", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("path", pa.string()),  # relative to the data directory
        ("file_size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha1", pa.string()),
        ("frames", pa.int64()),
        ("sample_rate", pa.int32()),
        ("channels", pa.int32()),
        ("sample_format", pa.string()),
        ("duration", pa.float64()),
        ("peak_db", pa.float64()),
        ("rms_db", pa.float64()),
        ("nonsilent", pa.list_(INTERVAL)),  # sample intervals at the file's own rate
        ("nonsilent_duration", pa.float64()),
        ("error", pa.string()),  # null when the file was read
    ]
)

REJECTED_SCHEMA = pa.schema(
    [
        ("fname", pa.string()),
        ("subset", pa.string()),
        ("path", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# Reasons a file is rejected; the detail column says more.
REASON_KAGGLE = "kaggle_corrupt_list"
REASON_UNREADABLE = "unreadable"
REASON_SILENT = "all_silent"
REASON_MISSING = "missing"
REASON_DUPLICATE = "duplicate"
REASON_UNLISTED = "unlisted"
REASON_NO_LABELS = "no_labels"
UNLISTED_ERROR = "unlisted: no CSV names this file"


def _db(x: float) -> float:
    return float(20.0 * np.log10(max(x, 1e-10)))


def describe_file(
    data_dir: Path, fname: str, subset: str, labels: Iterable[str], silence_top_db: float = 20.0
) -> dict:
    """One metadata row; read errors are recorded in ``error``, never raised."""
    rel = f"{AUDIO_DIRS[subset]}/{fname}"
    path = data_dir / rel
    row: dict = {name: None for name in METADATA_SCHEMA.names}
    row.update(fname=fname, subset=subset, labels=list(labels), path=rel, nonsilent=[])
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
    )
    return row


def extract_metadata(
    data_dir: Path, out_path: Path, silence_top_db: float = 20.0, workers: int = 2
) -> Path:
    """Writes ``metadata.parquet``: one row per file the CSVs name, in CSV order.

    Incremental: a file whose size and mtime match the previous ``out_path``
    keeps its row and is not read again.
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
            path = data_dir / AUDIO_DIRS[subset] / item.fname
            try:
                st = path.stat()
                unchanged = (
                    prev is not None
                    and prev["error"] is None
                    and prev["file_size"] == st.st_size
                    and prev["mtime_ns"] == st.st_mtime_ns
                )
            except OSError:
                unchanged = False
            if unchanged:
                rows.append({**prev, "labels": list(item.labels)})
            else:
                todo.append((len(rows), item.fname, subset, item.labels))
                rows.append(None)

    # Audio files that no CSV names are recorded too (and rejected), never lost silently.
    named = {(r["subset"], r["fname"]) for r in rows if r is not None}
    named |= {(subset, fname) for _, fname, subset, _ in todo}
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
                row = {name: None for name in METADATA_SCHEMA.names}
                row.update(
                    fname=path.name,
                    subset=subset,
                    labels=[],
                    nonsilent=[],
                    path=f"{AUDIO_DIRS[subset]}/{path.name}",
                    error=UNLISTED_ERROR,
                    file_size=path.stat().st_size,
                )
                rows.append(row)

    def work(job: tuple[int, str, str, tuple[str, ...]]) -> tuple[int, dict]:
        i, fname, subset, labels = job
        return i, describe_file(data_dir, fname, subset, labels, silence_top_db)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, row in pool.map(work, todo):
            rows[i] = row
    table = pa.Table.from_pylist(rows, schema=METADATA_SCHEMA)
    write_parquet_atomic(table, out_path)
    return out_path


def filter_corrupt(metadata_path: Path, kept_path: Path, rejected_path: Path) -> tuple[int, int]:
    """Splits metadata into kept rows and rejected rows with a reason each.

    Rejects Kaggle's six known corrupt curated files, unreadable, empty or
    all-silent files, files no CSV names, training files without labels, and
    repeated (subset, fname) rows. Never deletes audio.

    Returns:
        ``(kept, rejected)`` counts.
    """
    rows = pq.read_table(metadata_path).to_pylist()
    kept, rejected = [], []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        reason, detail = None, None
        key = (row["subset"], row["fname"])
        if row["subset"] == "curated" and row["fname"] in KAGGLE_CORRUPT_FILES:
            reason, detail = REASON_KAGGLE, "listed by Kaggle as corrupt or empty"
        elif key in seen:
            reason, detail = REASON_DUPLICATE, "file named twice in the CSV"
        elif row["error"] == UNLISTED_ERROR:
            reason, detail = REASON_UNLISTED, row["error"]
        elif row["error"] is not None:
            missing = row["error"].startswith("missing")
            reason, detail = (REASON_MISSING if missing else REASON_UNREADABLE), row["error"]
        elif row["subset"] != "test" and not row["labels"]:
            reason, detail = REASON_NO_LABELS, "a training file with an empty label string"
        elif not row["nonsilent"]:
            reason, detail = REASON_SILENT, "no sound above digital silence"
        seen.add(key)
        if reason is None:
            kept.append(row)
        else:
            rejected.append(
                {
                    "fname": row["fname"],
                    "subset": row["subset"],
                    "path": row["path"],
                    "reason": reason,
                    "detail": detail,
                }
            )
    write_parquet_atomic(pa.Table.from_pylist(kept, schema=METADATA_SCHEMA), kept_path)
    write_parquet_atomic(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA), rejected_path)
    return len(kept), len(rejected)


def dataset_fingerprint(metadata_path: Path) -> str:
    """Hash of the files' contents, subsets and labels: what determines training data."""
    table = pq.read_table(metadata_path, columns=["subset", "fname", "sha1", "labels"])
    h = hashlib.sha256()
    for row in table.to_pylist():
        h.update(
            f"{row['subset']}/{row['fname']}:{row['sha1']}:{','.join(row['labels'])}\n".encode()
        )
    return h.hexdigest()[:16]
