"""The dataset report: the capstone report's exploratory data analysis, made automatically.

`write_data_report` reads ``metadata.parquet`` (every file the CSVs name, read
errors included) and ``rejected.parquet`` and writes four PNG plots
(`audiotag.data.report.plots`) and a short ``data_report.md``
(`audiotag.data.report.markdown`) that summarises each subset, lists the rejected
files and links the plots.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from audiotag.data.layout import formula_labels, outside_vocabulary
from audiotag.data.report.markdown import REJECTED_COLUMNS, label_notes, render_markdown
from audiotag.data.report.plots import PLOTS, save_png
from audiotag.data.report.subsets import load_subsets
from audiotag.storage import write_text_atomic

REPORT_NAME = "data_report.md"


def write_data_report(
    metadata_path: Path, rejected_path: Path, out_dir: Path, vocab: Sequence[str] = ()
) -> list[Path]:
    """Writes the dataset report (the capstone report's EDA, made automatically).

    Writes ``durations.png``, ``label_frequency.png``, ``labels_per_clip.png``,
    ``levels.png`` and ``data_report.md`` into ``out_dir``, each atomically (a
    temporary file beside it, then a rename). Rows whose ``error`` is set are
    counted but left out of the numeric plots and statistics; empty subsets,
    unlabelled subsets and an empty rejected table are reported as such.

    Args:
        metadata_path: ``metadata.parquet`` with ``METADATA_SCHEMA``: all files,
            before filtering.
        rejected_path: ``rejected.parquet`` with ``REJECTED_SCHEMA``.
        out_dir: Directory for the report; created if missing.
        vocab: The label vocabulary: the kept clips none of whose labels is in it are
            counted and named, and labels a spreadsheet would run as formulas listed.

    Returns:
        The written paths: ``data_report.md`` first, then the PNGs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subsets = load_subsets(Path(metadata_path))
    rejected = pq.read_table(rejected_path, columns=REJECTED_COLUMNS).to_pylist()
    pngs = [save_png(draw(subsets), out_dir / f"{name}.png") for name, draw in PLOTS.items()]
    gone = {(r["subset"], r["fname"]) for r in rejected}
    rows = pq.read_table(metadata_path, columns=["subset", "fname", "labels"]).to_pylist()
    kept = [r for r in rows if (r["subset"], r["fname"]) not in gone]
    notes = label_notes(outside_vocabulary(kept, vocab), formula_labels(vocab)) if vocab else []
    md = write_text_atomic(render_markdown(subsets, rejected, pngs, notes), out_dir / REPORT_NAME)
    return [md, *pngs]


_PLOT_LINK = re.compile(r"!\[([^\]]*)\]\(([^)/]+\.png)\)")


def embed_plots(markdown: str, folder: Path) -> str:
    """The report's text with each plot link ``![name](name.png)`` replaced by the PNG
    itself as a ``data:`` URI, for a viewer that cannot fetch files beside it (the
    Prefect UI's markdown artifacts). A plot missing from ``folder`` keeps its link."""
    import base64

    def inline(m: re.Match[str]) -> str:
        png = Path(folder) / m.group(2)
        if not png.is_file():
            return m.group(0)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        return f"![{m.group(1)}](data:image/png;base64,{data})"

    return _PLOT_LINK.sub(inline, markdown)


def write_scored_report(
    report: Path, per_class: list[dict], out: Path, relink: bool = True
) -> Path:
    """The data report with the run's per-class scores appended, written to ``out``.

    ``report``: the dataset's ``data_report.md``; its plots stay beside it, and with
    ``relink`` the links are rewritten to reach them from ``out``'s folder (without,
    for a copy that goes where the plots go, as MLflow's ``data_report`` folder).
    ``per_class``: rows with ``label``, ``weight`` and score columns (None where a set
    has no true label).
    """
    text = report.read_text()
    if relink:
        rel = os.path.relpath(report.parent, out.parent)
        text = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({rel}/{m.group(1)})", text)
    if per_class:
        cols = list(per_class[0])
        lines = [
            "",
            "## Per-class lwlrap of this run (weakest out-of-fold first)",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
        ]
        for row in per_class:
            cells = [
                "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
                for v in row.values()
            ]
            lines.append("| " + " | ".join(cells) + " |")
        text = text.rstrip() + "\n" + "\n".join(lines) + "\n"
    return write_text_atomic(text, out)
