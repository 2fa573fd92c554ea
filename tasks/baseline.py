"""The built-in baseline task: a linear model on pooled log-mel statistics, per fold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.context import TaskRunContext

from audiotag.config import TrainConfig, settings_hash
from audiotag.data.layout import TRAIN_SUBSETS
from audiotag.steps.baseline import BaselineResult, fit_baseline
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.workspace import Workspace


def baseline_cache_key(ctx: TaskRunContext | None, parameters: dict[str, Any]) -> str:
    """What the baseline's scores depend on: the data and features, the folds, the
    scored subset and the seed; not the network's settings."""
    config: TrainConfig = parameters["config"]
    return settings_hash(
        parameters["info"].model_key,
        parameters["workdir"],
        parameters["store_dir"],
        config.folds,
        config.last_stage.subsets[0],
        config.seed,
        *TRAIN_SUBSETS,
    )


@task(
    persist_result=True,
    cache_policy=CacheKeyFnPolicy(cache_key_fn=baseline_cache_key) + TASK_SOURCE,
)
def fit_linear_baseline(
    workdir: str, info: DatasetInfo, store_dir: str, config: TrainConfig
) -> BaselineResult:
    """Fits and scores the baseline on the network's folds (seconds on a CPU)."""
    result = fit_baseline(Workspace.at(workdir), info, Path(store_dir), config)
    test = "n/a" if result.test_lwlrap is None else f"{result.test_lwlrap:.4f}"
    get_run_logger().info(
        "baseline (logistic regression on log-mel mean and std): OOF lwlrap %.4f, test %s",
        result.oof_lwlrap,
        test,
    )
    return result


def baseline_task(workdir: str) -> Task:
    """The baseline task with its cache records and results under the work dir."""
    ws = Workspace.at(workdir)
    return fit_linear_baseline.with_options(
        cache_policy=fit_linear_baseline.cache_policy.configure(key_storage=str(ws.cache_keys)),
        result_storage=ws.results,
    )
