"""Fold training tasks: cached by data, settings, stage, fold and source; tracked in MLflow."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.concurrency.sync import concurrency
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture

from audiotag.config import TrainConfig, settings_hash
from audiotag.devices import device_pool
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.keys import fold_model_path, fold_result_key
from audiotag.steps.training import train_fold
from audiotag.steps.workspace import Workspace
from audiotag.stopping import stop_requested
from audiotag.storage import file_digest
from audiotag.tracking.runs import (
    Tracking,
    end_run,
    flatten,
    log_artifact,
    log_metrics,
    start_child,
)
from audiotag.training.progress import format_history
from audiotag.training.stage import EpochRecord, StageResult
from tasks.runners import task_submitter


def fold_cache_key(ctx: TaskRunContext, parameters: dict[str, Any]) -> str:
    """The fold's result key (data, this stage's settings, fold, initial weights), and
    where it is written. It leaves out the tracking record and the flow-run id (new every
    run), later stages' settings and test-time settings, so a re-run finds every fold
    whose result would not change. A noisy selection enters by its file's bytes."""
    init: StageResult | None = parameters["init"]
    selection: str | None = parameters.get("selection")
    return settings_hash(
        fold_result_key(
            parameters["config"],
            parameters["stage"],
            parameters["fold"],
            parameters["info"].model_key,
            Path(init.model_path) if init else None,
        ),
        parameters["workdir"],
        parameters["store_dir"],
        *([file_digest(Path(selection))] if selection else []),
    )


FOLD_CACHE = CacheKeyFnPolicy(cache_key_fn=fold_cache_key) + TASK_SOURCE

# A test (and an operator) can make one fold fail, e.g. "noisy:3".
FAIL_ENV = "AUDIOTAG_FAIL_FOLD"


def fold_task(workdir: str, info: DatasetInfo, config: TrainConfig, stage: str, fold: int) -> Task:
    """The task of one stage and fold, its cache records and results under the work dir.

    Everything a re-run needs to find finished folds then lives in one folder: put
    the work dir on shared storage and a new container or worker finds them too. A
    cached result whose model file is gone (``models/`` deleted to free space) is not
    trusted: the fold trains again and its cache record is replaced.
    """
    ws = Workspace.at(workdir)
    model = fold_model_path(ws, config, stage, fold, info.model_key)
    name = f"{stage}-fold-{fold + 1}"
    return train_stage_fold.with_options(
        name=name,  # what the UI shows before the run name is set (while it waits)
        task_run_name=name,
        cache_policy=FOLD_CACHE.configure(key_storage=str(ws.cache_keys)),
        result_storage=ws.results,  # a Path: local files, no block to save
        refresh_cache=not model.exists(),
    )


# Global concurrency limit that caps fold trainings on GPUs over every worker.
GPU_LIMIT = "gpu"


@contextmanager
def gpu_slot(device: str) -> Iterator[None]:
    """Holds one slot of the ``gpu`` global concurrency limit while a fold trains on a GPU.

    The slot is taken once this process has a free GPU for the fold, so a fold waiting
    for its own container's GPU never holds a slot another worker's idle GPU could use.
    Without the limit (``prefect gcl create gpu --limit <GPUs>``) nothing is held back;
    CPU folds take no slot (they take turns on the cores in the device pool).
    """
    if not device.startswith("cuda"):
        yield
        return
    with concurrency(GPU_LIMIT, occupy=1, strict=False):
        yield


def artifact_key(text: str) -> str:
    """``text`` as a Prefect artifact key: lowercase letters, digits and dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def _epoch_line(name: str, rec: EpochRecord) -> str:
    return (
        f"{name} epoch {rec.epoch}/{rec.epochs}  train/loss {rec.train_loss:.4f}  valid/loss "
        f"{rec.valid_loss:.4f}  valid/lwlrap {rec.valid_lwlrap:.4f}  ({rec.seconds:.0f}s)"
    )


def _epoch_reporter(name: str, tracking: Tracking, run_id: str) -> Callable[[EpochRecord], None]:
    """Each finished epoch to the fold's progress artifact, the log and its MLflow run."""
    logger = get_run_logger()
    # The UI shows each running fold's progress, updated every epoch.
    progress = create_progress_artifact(
        0.0, key=artifact_key(f"{name}-progress"), description=f"{name}: starting"
    )

    def on_epoch(rec: EpochRecord) -> None:
        scored = "" if math.isnan(rec.valid_lwlrap) else f", valid lwlrap {rec.valid_lwlrap:.4f}"
        update_progress_artifact(
            progress,
            100.0 * rec.epoch / rec.epochs,
            description=f"{name}: epoch {rec.epoch}/{rec.epochs}{scored}",
        )
        logger.info("%s", _epoch_line(name, rec))
        metrics = {
            "train/loss": rec.train_loss,
            "valid/loss": rec.valid_loss,
            "valid/lwlrap": rec.valid_lwlrap,
            "lr": rec.lr,
        }
        log_metrics(tracking, run_id, metrics, step=rec.epoch)

    return on_epoch


def _init_learned(name: str, init: StageResult | None, margin: float) -> bool:
    """Whether the initial weights learned anything; initial weights that scored about
    chance did not, and the fold then gets the step floor of a stage from scratch (on
    small data, where the stage before had few steps)."""
    if init is None or init.learned(margin):
        return True
    get_run_logger().info(
        "%s: the initial weights scored %.4f on their held-out clips, chance is %.4f: "
        "training with the from-scratch step floor",
        name,
        init.valid_lwlrap,
        init.chance_lwlrap,
    )
    return False


def _retry_unless_stopped(task: Task, task_run: Any, state: Any) -> bool:
    """A fold is retried unless the run was asked to stop (Ctrl-C)."""
    return not stop_requested()


# A retry continues from the fold's last finished epoch, so it costs at most one epoch.
# No tags: Prefect leases tag concurrency slots through the API for every tagged task
# run, one request at a time, which held the folds' start back by ~2 s per flow run.
# GPUs are guarded by the global `gpu` limit instead (gpu_slot).
@task(
    persist_result=True,
    cache_policy=FOLD_CACHE,
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=_retry_unless_stopped,
)
def train_stage_fold(
    workdir: str,
    info: DatasetInfo,
    store_dir: str,
    config: TrainConfig,
    stage: str,
    fold: int,
    init: StageResult | None,
    tracking: Tracking,
    selection: str | None = None,
) -> StageResult:
    """Trains one stage on one fold (and a noisy selection's kept clips); resumes if re-run."""
    logger = get_run_logger()
    if os.environ.get(FAIL_ENV) == f"{stage}:{fold + 1}":
        raise RuntimeError(f"{stage} fold {fold + 1} made to fail by {FAIL_ENV}")
    name = f"{stage}-fold-{fold + 1}"
    params = flatten("", config.stage(stage).model_dump(mode="json"))
    params.update(stage=stage, fold=str(fold + 1), fingerprint=info.fingerprint)
    if selection:
        params["noisy_selection_file"] = Path(selection).name
    ctx = TaskRunContext.get()
    if ctx is not None:
        params["prefect_task_run_id"] = str(ctx.task_run.id)
    run_id = start_child(tracking, name, params)
    on_epoch = _epoch_reporter(name, tracking, run_id)
    learned = _init_learned(name, init, config.stage(stage).init_min_gain)
    ok = False
    try:
        with device_pool().lease() as device, gpu_slot(device):
            logger.info("%s on %s", name, device)
            result = train_fold(
                Workspace.at(workdir),
                info,
                Path(store_dir),
                config,
                stage,
                fold,
                Path(init.model_path) if init else None,
                device,
                on_epoch,
                Path(selection) if selection else None,
                init_learned=learned,
            )
        if result.resumed_from_epoch:
            logger.info("%s resumed after epoch %d", name, result.resumed_from_epoch)
        logger.info(
            "%s done: valid lwlrap %.4f\n%s",
            name,
            result.valid_lwlrap,
            format_history(result.history),
        )
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


def fold_runner(
    dask_address: str | None = None,
) -> AbstractContextManager[Callable[..., PrefectFuture]]:
    """``submit(task, **parameters)`` for fold trainings.

    Without an address the folds go to the flow's own task runner. With one they go
    to that Dask cluster through prefect-dask, each asking for one ``GPU`` resource, so
    a worker started with ``--resources GPU=<n>`` never trains more than n folds at once.
    """
    return task_submitter(dask_address, {"GPU": 1})
