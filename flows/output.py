"""What the CLI prints: a run's summary table, and tags as CSV, JSON or JSONL."""

from __future__ import annotations

import csv
import json
from typing import Any


class _AroundBars:
    """A console stream whose writes go through ``tqdm.write``: the progress bars are
    cleared, the log line written, the bars drawn again below it (no torn lines)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")
        return len(text)

    def __getattr__(self, name: str) -> Any:  # isatty, flush, encoding, fileno
        return getattr(self.stream, name)


def route_logs_around_bars() -> None:
    """Prefect's console log lines through ``tqdm.write`` when the bars are drawn (a
    terminal, no --quiet); nothing changes elsewhere. Call after Prefect is imported."""
    import logging
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler

    from audiotag.training.progress import bars_wanted

    if not bars_wanted(sys.stderr):
        return
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.console.file, _AroundBars
            ):
                handler.console.file = _AroundBars(handler.console.file)


def print_summary(summary: dict[str, Any]) -> None:
    print("\naudiotag run", summary["run_name"])
    columns = [*summary["stages"], "baseline"]
    heads = [f"{c} lwlrap" for c in columns]
    widths = [max(12, len(h)) for h in heads]
    print(f"{'fold':>6}" + "".join(f"  {h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for row in summary["folds"]:
        cells = ["-" if row.get(c) is None else f"{row[c]:.4f}" for c in columns]
        print(
            f"{row['fold']:>6}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )

    def fmt(x: float | None) -> str:
        return "n/a (no test labels)" if x is None else f"{x:.4f}"

    base = summary["baseline"]
    print(f"\n{'':30}{'network':>10}  {'baseline':>10}")
    oof_label = f"out-of-fold lwlrap ({summary['stages'][-1]}):"
    print(f"{oof_label:30}{fmt(summary['oof_lwlrap']):>10}  {fmt(base['oof_lwlrap']):>10}")
    if summary["test_lwlrap"] is None:
        print(f"{'test lwlrap:':30}n/a (no test labels)")
    else:
        print(
            f"{'test lwlrap:':30}{fmt(summary['test_lwlrap']):>10}  {fmt(base['test_lwlrap']):>10}"
        )
    print("  (baseline: logistic regression on each clip's log-mel mean and std)")
    if summary.get("oof_micro_f1") is not None:
        label = "tags micro-F1 (thresholds):"
        test = summary.get("test_micro_f1")
        print(f"{label:30}{fmt(summary['oof_micro_f1']):>10}  (OOF), test {fmt(test)}")
        print("  (each label's threshold calibrated on the out-of-fold predictions)")
    for reason in summary.get("not_scored", []):
        print(f"  {reason}")
    print(summary["verdict"])
    print(f"files kept / rejected:        {summary['kept']} / {summary['rejected']}")
    print(f"submission:   {summary['submission'] or 'none (no test set)'}")
    print(f"scores:       {summary['scores']}")
    print(f"model:        {summary['model']}")
    print(f"  tag audio:  audiotag tag PATH... --model {summary['model']}")
    print(f"MLflow run:   {summary['mlflow_run_id']} in {summary['mlflow_uri']}")
    if not summary["mlflow_uri"].startswith(("http://", "https://")):
        print(
            f"  browse:     mlflow ui --backend-store-uri {summary['mlflow_uri']} --host 127.0.0.1"
        )
    if summary.get("mlflow_link"):  # the model-training view, not MLflow 3's GenAI overview
        print(f"  open:       {summary['mlflow_link']}")


CSV_COLUMNS = ["path", "kind", "rank", "label", "probability", "start", "end", "error"]


def write_tags(rows: list, fmt: str, out: Any) -> None:
    """Tag rows (`audiotag.inference.tagging.Tags`) as a table for people, CSV, a JSON
    list or JSON lines.

    JSON and JSONL: one `tag_record` per file (the served model's fields). CSV
    (formula-like cells escaped): one line per chosen label (``kind`` ``tag``, ranked), the
    file's best label (``best``), each segment (``segment``, with ``start`` and ``end``
    in seconds) and an unreadable file's error (``error``).
    """
    from audiotag.inference.tagging import tag_record

    if fmt == "csv":
        from audiotag.storage import safe_csv_cell as safe

        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            path = safe(r.path)
            if r.error is not None:
                writer.writerow([path, "error", "", "", "", "", "", safe(r.error)])
                continue
            for rank, (label, p) in enumerate(r.tags, 1):
                writer.writerow([path, "tag", rank, safe(label), f"{p:.6f}", "", "", ""])
            if r.best is not None:
                writer.writerow([path, "best", "", safe(r.best[0]), f"{r.best[1]:.6f}", "", "", ""])
            for seg in r.segments or []:
                writer.writerow(
                    [
                        path,
                        "segment",
                        "",
                        safe(seg.label),
                        f"{seg.probability:.6f}",
                        f"{seg.start:.3f}",
                        f"{seg.end:.3f}",
                        "",
                    ]
                )
    elif fmt in ("json", "jsonl"):
        objs = [tag_record(r) for r in rows]
        if fmt == "json":
            json.dump(objs, out, indent=2, allow_nan=False)
            out.write("\n")
        else:
            for obj in objs:
                out.write(json.dumps(obj, allow_nan=False) + "\n")
    else:
        width = max((len(r.path) for r in rows), default=4)
        for r in rows:
            if r.error is not None:
                text = f"ERROR: {r.error}"
            elif r.tags:
                text = "  ".join(f"{lb} ({p:.2f})" for lb, p in r.tags)
            elif r.best is not None:
                text = f"no tag above its threshold; best: {r.best[0]} ({r.best[1]:.2f})"
            else:
                text = "no tag"
            out.write(f"{r.path:<{width}}  {text}\n")
            for seg in r.segments or []:
                out.write(
                    f"{'':<{width}}    {seg.start:8.2f} - {seg.end:8.2f} s  {seg.label} "
                    f"({seg.probability:.2f})\n"
                )
