"""The dataset report's text: ``data_report.md``, a summary table per subset, the
rejected files and links to the plots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from audiotag.data.report.subsets import SubsetSummary
from audiotag.data.schemas import REJECTED_SCHEMA

MAX_REJECTED_ROWS = 50
_MAX_DETAIL_CHARS = 200
REJECTED_COLUMNS = ["fname", "subset", "reason", "detail"]
assert set(REJECTED_COLUMNS) <= set(REJECTED_SCHEMA.names)


def _cell(value: Any) -> str:
    """One markdown table cell: pipes escaped, on one line, not too long."""
    text = "" if value is None else " ".join(str(value).split())
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[: _MAX_DETAIL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    return [_row(header), "|" + "---|" * len(header), *(_row(r) for r in rows)]


def _transposed(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A table with one column per row of ``rows`` and one row per field: a few subsets
    and fifteen fields stay readable where a wide table is cut off (the Prefect UI)."""
    columns = [list(r) for r in rows]
    return _table(
        [header[0], *(c[0] for c in columns)],
        ([field, *(c[i] for c in columns)] for i, field in enumerate(header[1:], 1)),
    )


def _seen(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values) if values else "–"


def _subset_row(s: SubsetSummary, rejected: int) -> list[Any]:
    seconds = float(s.duration.sum())
    distinct = {label for labels in s.labels for label in labels}
    combos = {tuple(sorted(labels)) for labels in s.labels if labels}
    has_durations = s.duration.size > 0
    return [
        s.name,
        s.files,
        s.readable,
        s.files - s.readable,
        rejected,
        f"{seconds / 3600:.2f} h ({seconds / 60:.1f} min)",
        f"{s.duration.mean():.2f}" if has_durations else "–",
        f"{s.duration.min():.2f}" if has_durations else "–",
        f"{s.duration.max():.2f}" if has_durations else "–",
        _seen(s.sample_rates),
        _seen(s.channels),
        _seen(s.sample_formats),
        len(distinct),
        len(combos),
        f"{np.mean([len(labels) for labels in s.labels]):.2f}" if s.has_labels else "–",
    ]


def label_notes(outside: dict[str, list[str]], formulas: list[str], shown: int = 20) -> list[str]:
    """Sentences on the labels: each subset's clips with no label in the vocabulary, named
    (the first ``shown``), and the labels CSV outputs escape; empty when there are none."""
    notes = []
    for subset, names in outside.items():
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        what = "cannot be scored" if subset == "test" else "train as clips of no class"
        notes.append(
            f"{len(names)} {subset} clips have no label in the vocabulary and {what}: "
            + ", ".join(names[:shown])
            + more
        )
    if formulas:
        notes.append(
            "labels a spreadsheet would run as formulas are written with a leading ' in "
            "CSV outputs: " + ", ".join(formulas)
        )
    return notes


def render_markdown(
    subsets: list[SubsetSummary],
    rejected: list[dict],
    pngs: list[Path],
    notes: list[str] | None = None,
) -> str:
    files = sum(s.files for s in subsets)
    readable = sum(s.readable for s in subsets)
    rejected_per_subset = Counter(r["subset"] for r in rejected)
    lines = [
        "# Dataset report",
        "",
        f"{files} files listed, {readable} read without error, {files - readable} with "
        f"read errors; {len(rejected)} rejected. Durations and levels cover the readable "
        "files only; a `–` marks a value with nothing to describe.",
        "",
        "## Subsets",
        "",
        *_transposed(
            [
                "subset",
                "files",
                "readable",
                "read errors",
                "rejected",
                "total duration",
                "mean duration (s)",
                "min duration (s)",
                "max duration (s)",
                "sample rates (Hz)",
                "channels",
                "sample formats",
                "distinct labels",
                "label combinations",
                "mean labels per clip",
            ],
            (_subset_row(s, rejected_per_subset[s.name]) for s in subsets),
        ),
        "",
        "## Rejected files",
        "",
    ]
    if not rejected:
        lines.append("No files were rejected.")
    else:
        reasons = Counter(r["reason"] for r in rejected)
        lines += [
            f"{len(rejected)} files rejected: "
            + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
            + ".",
            "",
            *_table(
                ["fname", "subset", "reason", "detail"],
                (
                    (r["fname"], r["subset"], r["reason"], r["detail"])
                    for r in rejected[:MAX_REJECTED_ROWS]
                ),
            ),
        ]
        if len(rejected) > MAX_REJECTED_ROWS:
            lines += [
                "",
                f"... and {len(rejected) - MAX_REJECTED_ROWS} more "
                "(all of them are in `rejected.parquet`).",
            ]
    if notes:
        lines += ["", "## Labels outside the vocabulary", "", *(f"- {n}" for n in notes)]
    lines += ["", "## Plots", ""]
    for png in pngs:
        lines += [f"![{png.stem}]({png.name})", ""]
    return "\n".join(lines)
