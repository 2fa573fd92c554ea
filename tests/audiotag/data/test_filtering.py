import shutil
from pathlib import Path

import pyarrow.parquet as pq

from audiotag.data.filtering import (
    REASON_KAGGLE,
    REASON_MISSING,
    REASON_NOT_REGULAR,
    REASON_OUTSIDE,
    REASON_SILENT,
    REASON_UNREADABLE,
    filter_corrupt,
)
from audiotag.data.layout import KAGGLE_CORRUPT_FILES
from audiotag.data.metadata import extract_metadata
from audiotag.data.schemas import KEPT_SCHEMA, REJECTED_SCHEMA
from tests.helpers.fifo import WatchedFifo


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


def test_names_and_links_out_of_the_dataset_and_non_files_are_rejected_unopened(
    drum_dataset: Path, drums_dir: Path, tmp_path: Path
) -> None:
    cur = drum_dataset / "train_curated"
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(drums_dir / "cymbal_00.wav", outside / "secret.wav")
    (cur / "link_out.wav").symlink_to(outside / "secret.wav")
    (cur / "zero.wav").symlink_to("/dev/zero")
    (cur / "folder.wav").mkdir()
    (cur / "link_in.wav").symlink_to("bass_drum_00.wav")  # a link that stays inside
    (cur / "sub").mkdir()
    (cur / "sub" / "up.wav").symlink_to("../snare_drum_00.wav")
    fifos = [WatchedFifo(cur / "pipe.wav"), WatchedFifo(outside / "pipe.wav")]
    (cur / "link_pipe.wav").symlink_to(cur / "pipe.wav")
    named = {
        "../../outside/secret.wav": REASON_OUTSIDE,
        "../../../../../../../etc/passwd": REASON_OUTSIDE,
        "/etc/passwd": REASON_OUTSIDE,
        "../../../../../../../dev/zero": REASON_OUTSIDE,
        "../../outside/pipe.wav": REASON_OUTSIDE,
        "link_out.wav": REASON_OUTSIDE,
        "zero.wav": REASON_OUTSIDE,
        "pipe.wav": REASON_NOT_REGULAR,
        "link_pipe.wav": REASON_NOT_REGULAR,
        "folder.wav": REASON_NOT_REGULAR,
    }
    csv = drum_dataset / "train_curated.csv"
    rows = [f"{name},Cymbal" for name in [*named, "link_in.wav", "sub/up.wav"]]
    csv.write_text(csv.read_text() + "\n".join(rows) + "\n")
    try:
        meta = extract_metadata(drum_dataset, tmp_path / "metadata.parquet", 20.0)
        filter_corrupt(meta, tmp_path / "kept.parquet", tmp_path / "rejected.parquet")
        assert not any(f.opened() for f in fifos)
    finally:
        for f in fifos:
            f.close()

    rejected = {r["fname"]: r for r in pq.read_table(tmp_path / "rejected.parquet").to_pylist()}
    assert {name: rejected[name]["reason"] for name in named} == named
    assert rejected["pipe.wav"]["detail"] == "not_a_regular_file: a FIFO, not an audio file"
    assert rejected["folder.wav"]["detail"].endswith("a directory, not an audio file")
    assert rejected["link_out.wav"]["detail"] == (
        "outside_dataset: resolves outside train_curated/ (links followed)"
    )
    # Nothing of a file outside is recorded: not its size, not its hash.
    meta_rows = {r["fname"]: r for r in pq.read_table(meta).to_pylist()}
    for name in named:
        assert meta_rows[name]["sha1"] is None and meta_rows[name]["file_size"] is None
    kept = {r["fname"]: r for r in pq.read_table(tmp_path / "kept.parquet").to_pylist()}
    assert kept["link_in.wav"]["sha1"] == kept["bass_drum_00.wav"]["sha1"]
    assert kept["sub/up.wav"]["sha1"] == kept["snare_drum_00.wav"]["sha1"]


def test_a_subset_folder_that_is_a_link_keeps_its_files(drum_dataset: Path, tmp_path: Path) -> None:
    # The audio on another disk, its folder linked into the dataset: the folder's real
    # path is what the files must stay inside.
    moved = tmp_path / "disk" / "train_curated"
    moved.parent.mkdir()
    (drum_dataset / "train_curated").rename(moved)
    (drum_dataset / "train_curated").symlink_to(moved)
    meta = extract_metadata(drum_dataset, tmp_path / "metadata.parquet", 20.0)
    assert filter_corrupt(meta, tmp_path / "k.parquet", tmp_path / "r.parquet") == (48, 5)


def test_a_reused_row_is_dropped_when_its_file_becomes_a_link_out(
    drum_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "metadata.parquet"
    extract_metadata(drum_dataset, out, 20.0)
    # The same bytes, size and mtime, now outside behind a link: not reused, rejected.
    name = drum_dataset / "train_curated" / "cymbal_00.wav"
    shutil.copy2(name, tmp_path / "cymbal_00.wav")
    name.unlink()
    name.symlink_to(tmp_path / "cymbal_00.wav")
    extract_metadata(drum_dataset, out, 20.0)
    filter_corrupt(out, tmp_path / "k.parquet", tmp_path / "r.parquet")
    reasons = {r["fname"]: r["reason"] for r in pq.read_table(tmp_path / "r.parquet").to_pylist()}
    assert reasons["cymbal_00.wav"] == REASON_OUTSIDE
