"""The TTA ensemble task: submission, out-of-fold and test scores, logged to the parent run.

The ensemble is the last stage's fold models; every stage's fold scores are logged.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from audiotag.config import TrainConfig
from audiotag.devices import cpu_cores, device_pool
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.ensemble import EnsembleResult, predict_test
from audiotag.steps.workspace import Workspace
from audiotag.tracking.registry import MODEL_NAME, register_ensemble
from audiotag.tracking.runs import Tracking, child_runs, log_artifact, log_metrics, run_link
from audiotag.training.stage import StageResult


@task
def tta_ensemble(
    workdir: str,
    info: DatasetInfo,
    store_dir: str,
    config: TrainConfig,
    results: dict[str, list[StageResult]],
    run_name: str,
    tracking: Tracking,
) -> EnsembleResult:
    """Averages the last stage's fold models' TTA test predictions into submission.csv.

    ``results`` maps each stage that ran, in order, to its folds' results.
    """
    last = list(results.values())[-1]
    ws = Workspace.at(workdir)
    # Every fold is done: the test predictions take every core.
    with device_pool().lease(threads=cpu_cores()) as device:
        result = predict_test(ws, info, Path(store_dir), config, last, ws.run_dir(run_name), device)
    metrics = {
        f"{r.stage}/fold_{r.fold + 1}/valid_lwlrap": r.valid_lwlrap
        for folds in results.values()
        for r in folds
    }
    metrics["oof/lwlrap"] = result.oof_lwlrap
    if result.test_lwlrap is not None:
        metrics["test/lwlrap"] = result.test_lwlrap
    log_metrics(tracking, tracking.parent_run_id, metrics)
    for path in (result.submission, result.oof, result.scores):
        if path is not None:
            log_artifact(tracking, tracking.parent_run_id, path)
    log_artifact(tracking, tracking.parent_run_id, result.model_dir, "model")
    reg = register_ensemble(tracking, Path(result.model_dir), info.vocab, result.oof_lwlrap)
    if not reg.new:
        get_run_logger().info(
            "the same models are registered already: %s version %s%s; not registered again",
            MODEL_NAME,
            reg.version,
            f" (alias '{reg.alias}')" if reg.alias else "",
        )
    else:
        get_run_logger().info(
            "registered as %s version %s with alias '%s'%s",
            MODEL_NAME,
            reg.version,
            reg.alias,
            ""
            if reg.alias == "champion"
            else " (it does not beat the champion's OOF lwlrap on this vocabulary)",
        )
    rows = [
        {
            "fold": r.fold + 1,
            **{
                f"{stage} lwlrap": round(folds[i].valid_lwlrap, 4)
                for stage, folds in results.items()
            },
        }
        for i, r in enumerate(last)
    ]
    create_table_artifact(rows, key="fold-scores", description="Validation lwlrap per fold")
    test = "n/a" if result.test_lwlrap is None else f"{result.test_lwlrap:.4f}"
    create_markdown_artifact(
        _summary(run_name, result, test, tracking, list(results)[-1]),
        key="run-summary",
        description="OOF and test lwlrap",
    )
    get_run_logger().info("OOF lwlrap %.4f, test lwlrap %s", result.oof_lwlrap, test)
    return result


def _summary(
    run_name: str, result: EnsembleResult, test: str, tracking: Tracking, stage: str
) -> str:
    folds = child_runs(tracking)
    lines = [
        f"# audiotag run {run_name}",
        "",
        "| score | lwlrap |",
        "|---|---|",
        f"| out-of-fold ({stage}) | {result.oof_lwlrap:.4f} |",
        f"| test | {test} |",
        "",
        f"MLflow: [parent run]({run_link(tracking, tracking.parent_run_id)})",
    ]
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
    return "\n".join(lines) + "\n"
