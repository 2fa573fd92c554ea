"""Fold training tasks: cached by data, settings, stage, fold and source; tracked in MLflow."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.context import TaskRunContext

from audiotag.config import Stage, TrainConfig
from audiotag.devices import device_pool
from audiotag.pipeline import DatasetInfo, Workspace, train_fold
from audiotag.train import EpochRecord, StageResult
from tasks.tracking import Tracking, end_run, flatten, log_artifact, log_metrics, start_child

# The key leaves out the tracking record (new every flow run) and the flow-run id,
# so a re-run finds the folds that already finished.
FOLD_CACHE = (INPUTS - "tracking") + TASK_SOURCE

# A test (and an operator) can make one fold fail, e.g. "noisy:3".
FAIL_ENV = "AUDIOTAG_FAIL_FOLD"


def fold_cache_policy(workdir: str):  # noqa: ANN201 - a prefect CachePolicy
    """The fold cache policy, its records kept under the work dir."""
    return FOLD_CACHE.configure(key_storage=str(Workspace(Path(workdir)).cache_keys))


# A retry continues from the fold's last finished epoch, so it costs at most one epoch.
@task(
    persist_result=True, cache_policy=FOLD_CACHE, tags=["fold"], retries=1, retry_delay_seconds=10
)
def train_stage_fold(
    workdir: str,
    info: DatasetInfo,
    store_dir: str,
    config: TrainConfig,
    stage: Stage,
    fold: int,
    init: StageResult | None,
    tracking: Tracking,
) -> StageResult:
    """Trains one stage on one fold; continues from its last checkpoint when re-run."""
    logger = get_run_logger()
    if os.environ.get(FAIL_ENV) == f"{stage}:{fold + 1}":
        raise RuntimeError(f"{stage} fold {fold + 1} made to fail by {FAIL_ENV}")
    name = f"{stage}-fold-{fold + 1}"
    params = flatten("", config.stage(stage).model_dump(mode="json"))
    params.update(stage=stage, fold=str(fold + 1), fingerprint=info.fingerprint)
    ctx = TaskRunContext.get()
    if ctx is not None:
        params["prefect_task_run_id"] = str(ctx.task_run.id)
    run_id = start_child(tracking, name, params)

    def on_epoch(rec: EpochRecord) -> None:
        logger.info(
            "%s epoch %d/%d  train/loss %.4f  valid/loss %.4f  valid/lwlrap %.4f  (%.0fs)",
            name,
            rec.epoch,
            rec.epochs,
            rec.train_loss,
            rec.valid_loss,
            rec.valid_lwlrap,
            rec.seconds,
        )
        log_metrics(
            tracking,
            run_id,
            {
                "train/loss": rec.train_loss,
                "valid/loss": rec.valid_loss,
                "valid/lwlrap": rec.valid_lwlrap,
                "lr": rec.lr,
            },
            step=rec.epoch,
        )

    ok = False
    try:
        with device_pool().lease() as device:
            logger.info("%s on %s", name, device)
            result = train_fold(
                Workspace(Path(workdir)),
                info,
                Path(store_dir),
                config,
                stage,
                fold,
                Path(init.model_path) if init else None,
                device,
                on_epoch,
            )
        if result.resumed_from_epoch:
            logger.info("%s resumed after epoch %d", name, result.resumed_from_epoch)
        log_metrics(
            tracking,
            run_id,
            {"final/valid_lwlrap": result.valid_lwlrap, "final/valid_loss": result.valid_loss},
        )
        log_artifact(tracking, run_id, result.model_path, "model")
        ok = True
        return result
    finally:
        end_run(tracking, run_id, ok)
