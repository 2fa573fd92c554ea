from pathlib import Path

import pyarrow.parquet as pq

from audiotag.data.filtering import (
    REASON_KAGGLE,
    REASON_MISSING,
    REASON_SILENT,
    REASON_UNREADABLE,
    filter_corrupt,
)
from audiotag.data.layout import KAGGLE_CORRUPT_FILES
from audiotag.data.metadata import extract_metadata
from audiotag.data.schemas import KEPT_SCHEMA, REJECTED_SCHEMA


def test_filter_records_every_rejection_with_reason(drum_dataset: Path, tmp_path: Path) -> None:
    meta = extract_metadata(drum_dataset, tmp_path / "metadata.parquet", 20.0)
    kept, rejected = filter_corrupt(meta, tmp_path / "kept.parquet", tmp_path / "rejected.parquet")
    assert (kept, rejected) == (48, 5)
    table = pq.read_table(tmp_path / "rejected.parquet")
    assert table.schema.equals(REJECTED_SCHEMA)
    assert pq.read_table(tmp_path / "kept.parquet").schema.equals(KEPT_SCHEMA)
    reasons = {r["fname"]: r["reason"] for r in table.to_pylist()}
    assert reasons == {
        "empty.wav": REASON_UNREADABLE,
        "trunc.wav": REASON_UNREADABLE,
        "silent.wav": REASON_SILENT,
        sorted(KAGGLE_CORRUPT_FILES)[0]: REASON_KAGGLE,
        "missing.wav": REASON_MISSING,
    }
    # Nothing is deleted.
    assert (drum_dataset / "train_curated" / "empty.wav").exists()
