"""The dataset report's plots, drawn on ``matplotlib.figure.Figure`` objects.

An explicit Agg canvas, never ``pyplot``: no global backend switch, no figure
registry for figures to leak into, and safe to call from worker threads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audiotag.data.report.subsets import SubsetSummary
from audiotag.storage import write_atomic

DPI = 100
# Levels below this are drawn at it: digital silence reads as -200 dBFS.
LEVEL_FLOOR_DB = -100.0


def _colors(subsets: list[SubsetSummary]) -> dict[str, str]:
    """One colour per subset, the same in every plot."""
    return {s.name: f"C{k % 10}" for k, s in enumerate(subsets)}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, target: Path) -> Path:
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


def _plot_durations(subsets: list[SubsetSummary]) -> Figure:
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


def _plot_label_frequency(subsets: list[SubsetSummary]) -> Figure:
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


def _plot_labels_per_clip(subsets: list[SubsetSummary]) -> Figure:
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


def _plot_levels(subsets: list[SubsetSummary]) -> Figure:
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


# Each plot's file stem and the function that draws it, in the report's order.
PLOTS: dict[str, Callable[[list[SubsetSummary]], Figure]] = {
    "durations": _plot_durations,
    "label_frequency": _plot_label_frequency,
    "labels_per_clip": _plot_labels_per_clip,
    "levels": _plot_levels,
}
PLOT_NAMES: tuple[str, ...] = tuple(PLOTS)
