"""The dataset report: the capstone report's exploratory data analysis, made automatically.

``write_data_report`` reads ``metadata.parquet`` (every file the CSVs name, read
errors included) and ``rejected.parquet`` and writes four PNG plots and a short
``data_report.md`` that summarises each subset, lists the rejected files and links
the plots.

Plots are drawn on ``matplotlib.figure.Figure`` objects with an explicit Agg
canvas, never through ``pyplot``: no global backend switch, no figure registry for
figures to leak into, and safe to call from worker threads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audiotag.data.layout import SUBSETS
from audiotag.data.metadata import METADATA_SCHEMA, REJECTED_SCHEMA
from audiotag.storage import write_atomic, write_text_atomic

REPORT_NAME = "data_report.md"
PLOT_NAMES: tuple[str, ...] = ("durations", "label_frequency", "labels_per_clip", "levels")
MAX_REJECTED_ROWS = 50
DPI = 100
# Levels below this are drawn at it: digital silence reads as -200 dBFS.
LEVEL_FLOOR_DB = -100.0
_MAX_DETAIL_CHARS = 200

_METADATA_COLUMNS = [
    "fname",
    "subset",
    "labels",
    "sample_rate",
    "channels",
    "sample_format",
    "duration",
    "peak_db",
    "rms_db",
    "nonsilent_duration",
    "error",
]
_REJECTED_COLUMNS = ["fname", "subset", "reason", "detail"]
assert set(_METADATA_COLUMNS) <= set(METADATA_SCHEMA.names)
assert set(_REJECTED_COLUMNS) <= set(REJECTED_SCHEMA.names)


@dataclass
class _Subset:
    """One subset's rows as plain arrays and lists.

    The numeric arrays hold the readable rows only (``error`` null, value
    finite); ``labels`` holds every row's labels, an empty list where none.
    """

    name: str
    files: int
    readable: int
    labels: list[list[str]]
    duration: np.ndarray
    peak_db: np.ndarray
    rms_db: np.ndarray
    nonsilent_share: np.ndarray
    sample_rates: list[int]
    channels: list[int]
    sample_formats: list[str]

    @property
    def has_labels(self) -> bool:
        """Whether any row of the subset has a label (test labels may be absent)."""
        return any(self.labels)


def write_data_report(metadata_path: Path, rejected_path: Path, out_dir: Path) -> list[Path]:
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

    Returns:
        The written paths: ``data_report.md`` first, then the PNGs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subsets = _load_metadata(Path(metadata_path))
    rejected = pq.read_table(rejected_path, columns=_REJECTED_COLUMNS).to_pylist()

    drawers: dict[str, Callable[[list[_Subset]], Figure]] = {
        "durations": _plot_durations,
        "label_frequency": _plot_label_frequency,
        "labels_per_clip": _plot_labels_per_clip,
        "levels": _plot_levels,
    }
    pngs = [_save_png(drawers[name](subsets), out_dir / f"{name}.png") for name in PLOT_NAMES]
    md = write_text_atomic(_markdown(subsets, rejected, pngs), out_dir / REPORT_NAME)
    return [md, *pngs]


# --- loading -----------------------------------------------------------------------------


def _load_metadata(path: Path) -> list[_Subset]:
    """Reads the metadata columns the report needs, split by subset.

    Returns:
        One entry per subset of ``SUBSETS``, in that order and empty ones
        included, then one per other subset name found in the file.
    """
    table = pq.read_table(path, columns=_METADATA_COLUMNS)
    cols = {name: table.column(name).to_pylist() for name in _METADATA_COLUMNS}
    found = {s for s in cols["subset"] if s not in SUBSETS}
    names = [*SUBSETS, *sorted(found, key=lambda s: (s is None, str(s)))]
    by_subset: dict[Any, list[int]] = {name: [] for name in names}
    for i, subset in enumerate(cols["subset"]):
        by_subset[subset].append(i)

    out = []
    for name, rows in by_subset.items():
        ok = [i for i in rows if cols["error"][i] is None]

        def floats(col: str, ok: list[int] = ok) -> np.ndarray:
            return np.array(
                [np.nan if cols[col][i] is None else cols[col][i] for i in ok], dtype=np.float64
            )

        duration, nonsilent = floats("duration"), floats("nonsilent_duration")
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(duration > 0, nonsilent / duration, np.nan)
        out.append(
            _Subset(
                name=str(name),
                files=len(rows),
                readable=len(ok),
                labels=[list(cols["labels"][i] or []) for i in rows],
                duration=_finite(duration),
                peak_db=_finite(floats("peak_db")),
                rms_db=_finite(floats("rms_db")),
                nonsilent_share=np.clip(_finite(share), 0.0, 1.0),
                # A file that failed after its header was read still tells its format.
                sample_rates=_distinct(cols["sample_rate"][i] for i in rows),
                channels=_distinct(cols["channels"][i] for i in rows),
                sample_formats=_distinct(cols["sample_format"][i] for i in rows),
            )
        )
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _distinct(values: Iterable[Any]) -> list[Any]:
    return sorted({v for v in values if v is not None})


# --- plots -------------------------------------------------------------------------------


def _colors(subsets: list[_Subset]) -> dict[str, str]:
    """One colour per subset, the same in every plot."""
    return {s.name: f"C{k % 10}" for k, s in enumerate(subsets)}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, target: Path) -> Path:
    """Renders ``fig`` to ``target`` atomically and frees it."""
    try:
        fig.tight_layout()
        return write_atomic(target, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        fig.clear()


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _range(
    arrays: Iterable[np.ndarray], low: float | None = None, high: float | None = None
) -> tuple[float, float]:
    """A histogram range covering all arrays, widened where it would be empty."""
    values = [a for a in arrays if a.size]
    lo = min(float(a.min()) for a in values) if low is None else low
    hi = max(float(a.max()) for a in values) if high is None else high
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _plot_durations(subsets: list[_Subset]) -> Figure:
    """Histograms of the readable files' durations, one panel per subset."""
    fig = _new_figure(3.0 * len(subsets), 2.6)
    axes = fig.subplots(1, len(subsets), squeeze=False)[0]
    durations = [s.duration for s in subsets if s.duration.size]
    bins = np.linspace(*_range(durations, low=0.0), 41) if durations else None
    colors = _colors(subsets)
    for ax, s in zip(axes, subsets, strict=True):
        ax.set_title(f"{s.name} ({s.readable} readable of {s.files})", fontsize=9)
        if not s.duration.size:
            _empty(ax, "no files" if not s.files else "no readable files")
            continue
        ax.hist(s.duration, bins=bins, color=colors[s.name])
        ax.set_xlabel("duration (s)")
        ax.set_ylabel("files")
    fig.suptitle("Clip durations", fontsize=10)
    return fig


def _plot_label_frequency(subsets: list[_Subset]) -> Figure:
    """Clips per label and labelled subset, labels sorted by their curated count."""
    labelled = [s for s in subsets if s.has_labels]
    counts = {s.name: Counter(label for labels in s.labels for label in labels) for s in labelled}
    total = sum(counts.values(), Counter())
    curated = counts.get("curated", Counter())
    order = sorted(total, key=lambda label: (-curated[label], -total[label], label))
    fig = _new_figure(6.5, max(2.5, 1.0 + 0.12 * len(order) * max(1, len(labelled)) ** 0.5))
    ax = fig.subplots()
    if not order:
        _empty(ax, "no labels")
        return fig
    y = np.arange(len(order))
    height = 0.8 / len(labelled)
    colors = _colors(subsets)
    for k, s in enumerate(labelled):
        values = [counts[s.name][label] for label in order]
        ax.barh(
            y - 0.4 + height * (k + 0.5),
            values,
            height=height,
            color=colors[s.name],
            label=f"{s.name} ({len(s.labels)} clips)",
        )
    ax.set_yticks(y, order, fontsize=6)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set_xlabel("clips")
    ax.legend(
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=len(labelled),
        frameon=False,
    )
    fig.suptitle("Clips per label (sorted by the curated count)", fontsize=10)
    return fig


def _plot_labels_per_clip(subsets: list[_Subset]) -> Figure:
    """Share of clips with 0, 1, 2, ... labels, per labelled subset."""
    labelled = [s for s in subsets if s.has_labels]
    fig = _new_figure(5.0, 3.0)
    ax = fig.subplots()
    if not labelled:
        _empty(ax, "no labels")
        return fig
    n_labels = {s.name: np.array([len(labels) for labels in s.labels]) for s in labelled}
    first = min(int(n.min()) for n in n_labels.values())
    last = max(int(n.max()) for n in n_labels.values())
    xs = np.arange(first, last + 1)
    width = 0.8 / len(labelled)
    colors = _colors(subsets)
    for k, s in enumerate(labelled):
        share = 100.0 * np.bincount(n_labels[s.name], minlength=last + 1)[first:] / len(s.labels)
        ax.bar(
            xs - 0.4 + width * (k + 0.5),
            share,
            width=width,
            color=colors[s.name],
            label=f"{s.name} ({len(s.labels)} clips)",
        )
    ax.set_xticks(xs)
    ax.set_xlabel("labels per clip")
    ax.set_ylabel("% of the subset's clips")
    ax.legend(fontsize=7)
    ax.set_title("Labels per clip", fontsize=10)
    return fig


def _plot_levels(subsets: list[_Subset]) -> Figure:
    """Peak level, RMS level and non-silent share of the readable files, per subset."""
    panels = [
        ("peak_db", f"peak level (dBFS, floor {LEVEL_FLOOR_DB:g})", True),
        ("rms_db", f"RMS level (dBFS, floor {LEVEL_FLOOR_DB:g})", True),
        ("nonsilent_share", "non-silent share of duration", False),
    ]
    fig = _new_figure(10.0, 2.8)
    axes = fig.subplots(1, len(panels))
    colors = _colors(subsets)
    for ax, (attr, xlabel, is_db) in zip(axes, panels, strict=True):
        data = [(s, getattr(s, attr)) for s in subsets if getattr(s, attr).size]
        if not data:
            _empty(ax, "no readable files")
            ax.set_xlabel(xlabel, fontsize=8)
            continue
        if is_db:
            data = [(s, np.maximum(v, LEVEL_FLOOR_DB)) for s, v in data]
            lo, hi = _range(v for _, v in data)
            hi = max(hi, 0.0)
        else:
            lo, hi = 0.0, 1.0
        bins = np.linspace(lo, hi, 31)
        for s, values in data:
            ax.hist(
                values,
                bins=bins,
                weights=np.full(values.size, 100.0 / values.size),
                histtype="step",
                linewidth=1.5,
                color=colors[s.name],
                label=s.name,
            )
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("% of readable files", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Levels", fontsize=10)
    return fig


# --- markdown ----------------------------------------------------------------------------


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


def _seen(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values) if values else "–"


def _subset_row(s: _Subset, rejected: int) -> list[Any]:
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


def _markdown(subsets: list[_Subset], rejected: list[dict], pngs: list[Path]) -> str:
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
        *_table(
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
    lines += ["", "## Plots", ""]
    for png in pngs:
        lines += [f"![{png.stem}]({png.name})", ""]
    return "\n".join(lines)
