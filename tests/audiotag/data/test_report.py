"""Tests for audiotag.data.report (package): the dataset report's files and markdown summary."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audiotag.data.report import write_data_report
from audiotag.data.report.markdown import MAX_REJECTED_ROWS
from audiotag.data.schemas import METADATA_SCHEMA, REJECTED_SCHEMA

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_NAMES = [
    "data_report.md",
    "durations.png",
    "label_frequency.png",
    "labels_per_clip.png",
    "levels.png",
]


def _row(
    fname: str,
    subset: str,
    labels: list[str],
    duration: float | None = 2.0,
    error: str | None = None,
    sample_rate: int = 44100,
    peak_db: float = -3.0,
    rms_db: float = -20.0,
) -> dict:
    """One metadata row; an error row has null numeric fields, as describe_file writes it."""
    row: dict = {name: None for name in METADATA_SCHEMA.names}
    row.update(
        fname=fname,
        subset=subset,
        labels=labels,
        path=f"{subset}/{fname}",
        nonsilent=[],
        error=error,
    )
    if error is None:
        frames = int(duration * sample_rate)
        row.update(
            file_size=44 + 2 * frames,
            mtime_ns=1,
            sha1="0" * 40,
            frames=frames,
            sample_rate=sample_rate,
            channels=1,
            sample_format="PCM_16",
            duration=duration,
            peak_db=peak_db,
            rms_db=rms_db,
            nonsilent=[{"start": 0, "end": frames // 2}],
            nonsilent_duration=duration / 2,
        )
    return row


def _write(rows: list[dict], schema: pa.Schema, path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _metadata_rows() -> list[dict]:
    """Curated and test rows (test unlabelled, one read error); no noisy rows."""
    return [
        _row("c1.wav", "curated", ["Bark"], 1.5),
        _row("c2.wav", "curated", ["Bark", "Meow"], 12.0, peak_db=-1.0, rms_db=-30.0),
        _row("c3.wav", "curated", ["Meow"], 0.3, sample_rate=48000),
        _row("c4.wav", "curated", ["Chirp"], error="unreadable audio (bad header)"),
        _row("c5.wav", "curated", ["Bark"], 4.0, peak_db=-200.0, rms_db=-200.0),
        _row("t1.wav", "test", [], 5.0),
        _row("t2.wav", "test", [], 7.5),
    ]


def _rejected_rows() -> list[dict]:
    return [
        {
            "fname": "c4.wav",
            "subset": "curated",
            "path": "curated/c4.wav",
            "reason": "unreadable",
            "detail": "unreadable audio (bad | header)",
        },
        {
            "fname": "c5.wav",
            "subset": "curated",
            "path": "curated/c5.wav",
            "reason": "all_silent",
            "detail": "no sound above digital silence",
        },
    ]


def _table_row(md: str, subset: str) -> list[str]:
    """A subset's column of the (transposed) subsets table: its name, then each field."""
    section = md.split("## Subsets", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in lines]
    col = rows[0].index(subset)
    return [subset] + [row[col] for row in rows[2:]]


def _check_files(paths: list[Path], out_dir: Path) -> None:
    assert [p.name for p in paths] == EXPECTED_NAMES
    assert all(p.parent == out_dir and p.is_file() for p in paths)
    for png in paths[1:]:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC), png
        assert len(data) > 1_000, png
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(EXPECTED_NAMES)


def test_report_writes_plots_and_summary(tmp_path: Path) -> None:
    metadata = _write(_metadata_rows(), METADATA_SCHEMA, tmp_path / "metadata.parquet")
    rejected = _write(_rejected_rows(), REJECTED_SCHEMA, tmp_path / "rejected.parquet")
    out_dir = tmp_path / "report"

    paths = write_data_report(metadata, rejected, out_dir)

    _check_files(paths, out_dir)
    md = paths[0].read_text()
    # subset, files, readable, read errors, rejected, total, mean, min, max, rates, channels,
    # formats, distinct labels, combinations, mean labels per clip
    curated = _table_row(md, "curated")
    assert curated[1:5] == ["5", "4", "1", "2"]
    assert curated[6:9] == ["4.45", "0.30", "12.00"]
    assert curated[9] == "44100, 48000"
    assert curated[10:12] == ["1", "PCM_16"]
    assert curated[12:15] == ["3", "4", "1.20"]
    noisy = _table_row(md, "noisy")
    assert noisy[1:5] == ["0", "0", "0", "0"]
    assert noisy[6] == "–"
    test = _table_row(md, "test")
    assert test[1:5] == ["2", "2", "0", "0"]
    assert test[12:15] == ["0", "0", "–"]
    for row in _rejected_rows():
        assert f"| {row['fname']} | {row['subset']} | {row['reason']} |" in md
    assert "bad \\| header" in md  # a pipe in a cell does not break the table
    for name in EXPECTED_NAMES[1:]:
        assert f"![{name[:-4]}]({name})" in md


def test_report_without_rejected_files(tmp_path: Path) -> None:
    metadata = _write(_metadata_rows(), METADATA_SCHEMA, tmp_path / "metadata.parquet")
    rejected = _write([], REJECTED_SCHEMA, tmp_path / "rejected.parquet")

    paths = write_data_report(metadata, rejected, tmp_path / "report")

    _check_files(paths, tmp_path / "report")
    assert "No files were rejected." in paths[0].read_text()


def test_report_with_no_readable_files_and_no_labels(tmp_path: Path) -> None:
    rows = [_row("t1.wav", "test", [], error="missing: no such file")]
    metadata = _write(rows, METADATA_SCHEMA, tmp_path / "metadata.parquet")
    rejected = _write([], REJECTED_SCHEMA, tmp_path / "rejected.parquet")

    paths = write_data_report(metadata, rejected, tmp_path / "report")

    _check_files(paths, tmp_path / "report")
    test = _table_row(paths[0].read_text(), "test")
    assert test[1:4] == ["1", "0", "1"]


def test_report_caps_rejected_table_and_overwrites(tmp_path: Path) -> None:
    metadata = _write(_metadata_rows(), METADATA_SCHEMA, tmp_path / "metadata.parquet")
    extra = 7
    many = [
        {
            "fname": f"n{i}.wav",
            "subset": "noisy",
            "path": f"noisy/n{i}.wav",
            "reason": "missing",
            "detail": "missing: no such file",
        }
        for i in range(MAX_REJECTED_ROWS + extra)
    ]
    rejected = _write(many, REJECTED_SCHEMA, tmp_path / "rejected.parquet")
    out_dir = tmp_path / "report"
    write_data_report(metadata, rejected, out_dir)

    paths = write_data_report(metadata, rejected, out_dir)  # a rerun replaces the files

    _check_files(paths, out_dir)
    md = paths[0].read_text()
    assert f"| n{MAX_REJECTED_ROWS - 1}.wav |" in md
    assert f"| n{MAX_REJECTED_ROWS}.wav |" not in md
    assert f"... and {extra} more" in md


def test_report_on_a_thousand_rows_is_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vocab = [f"Label_{i:02d}" for i in range(80)]
    rows = []
    for i in range(1000):
        subset = ("curated", "noisy", "test")[i % 3]
        labels = (
            []
            if subset == "test"
            else list(rng.choice(vocab, size=rng.integers(1, 4), replace=False))
        )
        error = "unreadable audio (x)" if i % 97 == 0 else None
        rows.append(
            _row(
                f"f{i}.wav",
                subset,
                labels,
                float(rng.uniform(0.3, 30.0)),
                error,
                peak_db=float(rng.uniform(-40, 0)),
                rms_db=float(rng.uniform(-60, -10)),
            )
        )
    metadata = _write(rows, METADATA_SCHEMA, tmp_path / "metadata.parquet")
    rejected = _write([], REJECTED_SCHEMA, tmp_path / "rejected.parquet")

    start = time.perf_counter()
    paths = write_data_report(metadata, rejected, tmp_path / "report")
    elapsed = time.perf_counter() - start

    _check_files(paths, tmp_path / "report")
    assert elapsed < 20.0


def test_the_scored_report_adds_per_class_scores_and_still_finds_its_plots(
    tmp_path: Path,
) -> None:
    from audiotag.data.report import write_scored_report

    report = tmp_path / "work" / "report" / "data_report.md"
    report.parent.mkdir(parents=True)
    (report.parent / "durations.png").write_bytes(b"png")
    report.write_text("# Dataset report\n\n![durations](durations.png)\n")
    rows = [{"label": "Meow", "weight": 0.5, "oof": 0.41, "test": None}]
    out = write_scored_report(report, rows, tmp_path / "work" / "runs" / "r1" / "data_report.md")
    text = out.read_text()
    assert "| Meow | 0.5000 | 0.4100 | - |" in text
    link = text.split("](")[1].split(")")[0]
    assert (out.parent / link).resolve() == (report.parent / "durations.png").resolve()
    beside = write_scored_report(report, rows, tmp_path / "copy.md", relink=False)
    assert "](durations.png)" in beside.read_text()


def test_clips_with_no_label_in_the_vocabulary_are_counted_and_named(tmp_path: Path) -> None:
    rows = [
        _row("c1.wav", "curated", ["Bark"]),
        _row("c2.wav", "curated", ["Moo"]),
        _row("c3.wav", "curated", ["Moo", "Oink"]),
        _row("c4.wav", "curated", ["Moo"]),  # rejected: not counted
        _row("t1.wav", "test", ["Quack"]),
    ]
    metadata = _write(rows, METADATA_SCHEMA, tmp_path / "metadata.parquet")
    gone = [{"fname": "c4.wav", "subset": "curated", "path": "x", "reason": "r", "detail": ""}]
    rejected = _write(gone, REJECTED_SCHEMA, tmp_path / "rejected.parquet")
    vocab = ("Bark", '=HYPERLINK("http://evil")')
    md = write_data_report(metadata, rejected, tmp_path / "report", vocab)[0].read_text()
    assert "## Labels outside the vocabulary" in md
    curated = "2 curated clips have no label in the vocabulary and train as clips of no class"
    assert f"{curated}: c2.wav, c3.wav" in md
    assert "1 test clips have no label in the vocabulary and cannot be scored: t1.wav" in md
    assert 'with a leading \' in CSV outputs: =HYPERLINK("http://evil")' in md
    every = ("Bark", "Moo", "Oink", "Quack")
    plain = write_data_report(metadata, rejected, tmp_path / "again", every)[0].read_text()
    assert "outside the vocabulary" not in plain
