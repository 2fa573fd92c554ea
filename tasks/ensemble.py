"""The TTA ensemble task: submission, out-of-fold and test scores, logged to the parent run.

The ensemble is the last stage's fold models; every stage's fold scores, the
baseline's and the per-class scores are logged beside it.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from audiotag.config import TrainConfig
from audiotag.data.report import REPORT_NAME, write_scored_report
from audiotag.devices import cpu_cores, device_pool
from audiotag.steps.baseline import BaselineResult, per_class_rows, verdict
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.ensemble import EnsembleResult, predict_test
from audiotag.steps.workspace import Workspace
from audiotag.storage import safe_csv_cell, write_text_atomic
from audiotag.tracking.runs import (
    Tracking,
    child_runs,
    log_artifact,
    log_metrics,
    log_series,
    run_link,
)
from audiotag.training.stage import StageResult
from tasks.registry import register_run_model


@task
def tta_ensemble(
    workdir: str,
    info: DatasetInfo,
    store_dir: str,
    config: TrainConfig,
    results: dict[str, list[StageResult]],
    run_name: str,
    tracking: Tracking,
    baseline: BaselineResult | None = None,
) -> EnsembleResult:
    """Averages the last stage's fold models' TTA test predictions into submission.csv.

    ``results`` maps each stage that ran, in order, to its folds' results.
    """
    last = list(results.values())[-1]
    ws = Workspace.at(workdir)
    run_dir = ws.run_dir(run_name)
    logger = get_run_logger()
    logger.info(
        "ensemble: %d %s fold models predict the out-of-fold and test clips (TTA)",
        len(last),
        list(results)[-1],
    )
    # Every fold is done: the test predictions take every core.
    with device_pool().lease(threads=cpu_cores()) as device:
        result = predict_test(
            ws, info, Path(store_dir), config, last, run_dir, device, baseline=baseline
        )
    logger.info("ensemble done: logging the run's outputs to MLflow, then registering the model")
    scores = json.loads(Path(result.scores).read_text())
    per_class = per_class_rows(scores)
    _log_scores(tracking, results, result, baseline, per_class)
    _log_threshold_scores(tracking, scores)
    per_class_csv = _write_per_class(
        with_threshold_scores(per_class, scores), run_dir / "per_class.csv"
    )
    report = ws.report_dir / REPORT_NAME
    if report.exists():  # the data report with this run's per-class scores
        write_scored_report(report, per_class, run_dir / REPORT_NAME)
        with tempfile.TemporaryDirectory() as tmp:  # beside the plots in MLflow
            copy = write_scored_report(report, per_class, Path(tmp) / REPORT_NAME, relink=False)
            log_artifact(tracking, tracking.parent_run_id, copy, "data_report")
    for path in (result.submission, result.oof, result.scores, per_class_csv):
        if path is not None:
            log_artifact(tracking, tracking.parent_run_id, path)
    log_artifact(tracking, tracking.parent_run_id, result.model_dir, "model")
    registered = register_run_model(ws, info, config, result, tracking)
    create_table_artifact(
        _fold_rows(results, baseline), key="fold-scores", description="Validation lwlrap per fold"
    )
    create_table_artifact(
        with_threshold_scores(per_class, scores),
        key="per-class-scores",
        description="lwlrap per label, weakest first; each label's calibrated threshold and "
        "its precision, recall and F1 there",
    )
    summary = _summary(
        run_name, result, tracking, list(results)[-1], baseline, registered, per_class
    )
    summary += _threshold_summary(scores)
    write_text_atomic(summary, ws.run_summary(run_name))  # the flow publishes it
    oof, test = (
        "n/a" if x is None else f"{x:.4f}" for x in (result.oof_lwlrap, result.test_lwlrap)
    )
    logger.info("OOF lwlrap %s, test lwlrap %s", oof, test)
    if result.oof_micro_f1 is not None:
        logger.info(
            "tags at the calibrated thresholds: OOF micro-F1 %.4f, test micro-F1 %s",
            result.oof_micro_f1,
            "n/a" if result.test_micro_f1 is None else f"{result.test_micro_f1:.4f}",
        )
    for reason in result.not_scored:  # the run's outputs are written all the same
        logger.warning("%s", reason)
    if baseline is not None:
        logger.info(verdict(result.oof_lwlrap, result.test_lwlrap, baseline))
    return result


# The parent run's per-fold scores: `fold_lwlrap/<stage>` and `fold_lwlrap/baseline`,
# fold k's at step k.
FOLD_METRIC = "fold_lwlrap"


def _metric_key(label: str) -> str:
    # MLflow metric names take alphanumerics, _ - . space and /, and must not read as
    # another path: a label's own / (as in a URL's //) and dot-only names become _.
    key = re.sub(r"[^\w\-. ]", "_", label)
    return "_" * len(key) if set(key) <= {"."} else key


def _log_scores(
    tracking: Tracking,
    results: dict[str, list[StageResult]],
    result: EnsembleResult,
    baseline: BaselineResult | None,
    per_class: list[dict],
) -> None:
    # Each stage's fold scores as one metric, fold k at step k: one chart per stage in
    # one section shows every fold (and the baseline's beside them).
    for stage, folds in results.items():
        by_fold = sorted(folds, key=lambda r: r.fold)
        log_series(
            tracking,
            tracking.parent_run_id,
            f"{FOLD_METRIC}/{stage}",
            [r.valid_lwlrap for r in by_fold],
        )
    if baseline is not None:
        log_series(
            tracking, tracking.parent_run_id, f"{FOLD_METRIC}/baseline", list(baseline.fold_lwlrap)
        )
    metrics: dict[str, float | None] = {
        "oof/lwlrap": result.oof_lwlrap,
        "test/lwlrap": result.test_lwlrap,
    }
    if baseline is not None:
        metrics["baseline/oof_lwlrap"] = baseline.oof_lwlrap
        metrics["baseline/test_lwlrap"] = baseline.test_lwlrap
    for row in per_class:
        key = _metric_key(row["label"])
        metrics[f"oof_per_class/{key}"] = row["oof"]
        metrics[f"test_per_class/{key}"] = row["test"]
    log_metrics(tracking, tracking.parent_run_id, metrics)


def with_threshold_scores(rows: list[dict], scores: dict) -> list[dict]:
    """Per-label rows with the label's calibrated threshold and the precision, recall and
    F1 of its tags there, out-of-fold and on the test set."""
    thresholds = scores["thresholds"]["by_label"]
    out = []
    for row in rows:
        label = row["label"]
        extra: dict = {"threshold": thresholds[label]}
        for where in ("oof", "test"):
            table = scores.get(f"{where}_at_thresholds")
            at = table["per_class"][label] if table else {}
            for key in ("precision", "recall", "f1"):
                extra[f"{where} {key}"] = at.get(key)
        out.append({**row, **extra})
    return out


def _log_threshold_scores(tracking: Tracking, scores: dict) -> None:
    """Each label's threshold and its precision, recall and F1 there (OOF and test), and
    the micro-F1 of the tags each rule gives."""
    metrics: dict[str, float | None] = {}
    for label, t in scores["thresholds"]["by_label"].items():
        metrics[f"threshold/{_metric_key(label)}"] = t
    for where in ("oof", "test"):
        table = scores.get(f"{where}_at_thresholds")
        if not table:
            continue
        metrics[f"{where}/micro_f1"] = table["micro_f1"]
        for label, at in table["per_class"].items():
            for key in ("precision", "recall", "f1"):
                metrics[f"{where}_{key}/{_metric_key(label)}"] = at[key]
    for rule, value in (scores.get("test_micro_f1") or {}).items():
        metrics[f"test/micro_f1_{rule}"] = value
    log_metrics(tracking, tracking.parent_run_id, metrics)


def _threshold_summary(scores: dict) -> str:
    oof = scores["oof_at_thresholds"]["micro_f1"]
    lines = ["", "Tags at each label's threshold, calibrated on the out-of-fold predictions:", ""]
    lines += ["| micro-F1 | out-of-fold | test |", "|---|---|---|"]
    rules = scores.get("test_micro_f1") or {}
    lines.append(f"| calibrated thresholds | {oof:.4f} | {_fmt(rules.get('calibrated'))} |")
    lines.append(f"| top 3 labels | | {_fmt(rules.get('top_3'))} |")
    lines.append(f"| one threshold of 0.5 | | {_fmt(rules.get('global_0.5'))} |")
    fallback = scores["thresholds"]["fallback"]
    if fallback:
        lines += [
            "",
            f"{len(fallback)} labels with fewer than {scores['thresholds']['min_positives']} "
            f"positives got the global threshold {scores['thresholds']['global']:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _write_per_class(rows: list[dict], path: Path) -> Path:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["label"])
    writer.writeheader()
    writer.writerows({**r, "label": safe_csv_cell(r["label"])} for r in rows)
    return write_text_atomic(out.getvalue(), path)


def _fold_rows(
    results: dict[str, list[StageResult]], baseline: BaselineResult | None
) -> list[dict]:
    last = list(results.values())[-1]
    rows = []
    for i, r in enumerate(last):
        row: dict = {"fold": r.fold + 1}
        row.update({f"{s} lwlrap": round(folds[i].valid_lwlrap, 4) for s, folds in results.items()})
        if baseline is not None:
            row["baseline lwlrap"] = round(baseline.fold_lwlrap[i], 4)
        rows.append(row)
    return rows


def _summary(
    run_name: str,
    result: EnsembleResult,
    tracking: Tracking,
    stage: str,
    baseline: BaselineResult | None,
    registered: str,
    per_class: list[dict],
) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    lines = [f"# audiotag run {run_name}", ""]
    if baseline is not None:
        lines += [f"**{verdict(result.oof_lwlrap, result.test_lwlrap, baseline)}**", ""]
    lines += [
        "| score | network | linear baseline |",
        "|---|---|---|",
        f"| out-of-fold ({stage}) | {fmt(result.oof_lwlrap)} | "
        f"{fmt(baseline.oof_lwlrap if baseline else None)} |",
        f"| test | {fmt(result.test_lwlrap)} | {fmt(baseline.test_lwlrap if baseline else None)} |",
        "",
        f"Registry: {registered}.",
        "",
        f"MLflow: [parent run]({run_link(tracking, tracking.parent_run_id)})",
    ]
    folds = child_runs(tracking)
    if folds:
        lines[-1] += "; folds trained in this flow run: " + ", ".join(
            f"[{name}]({run_link(tracking, rid)})" for name, rid in folds.items()
        )
    if not tracking.uri.startswith(("http://", "https://")):
        lines += [
            "",
            f"(open with `mlflow ui --backend-store-uri {tracking.uri} --host 127.0.0.1`)",
        ]
    lines += ["", f"Submission: `{result.submission}`; model package: `{result.model_dir}`"]
    if per_class:
        cols = list(per_class[0])
        lines += ["", "## Per-class lwlrap (weakest out-of-fold first)", ""]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in per_class:
            cells = [
                "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
                for v in row.values()
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def publish_summary(workdir: str, run_name: str) -> None:
    """The run summary as the flow run's own artifact (called in the flow, not a task:
    the UI's run page lists the flow run's artifacts first)."""
    text = Workspace.at(workdir).run_summary(run_name).read_text()
    create_markdown_artifact(
        text, key="run-summary", description="Scores, baseline, registry, per-class lwlrap"
    )
