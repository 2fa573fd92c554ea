"""The training flow: the DAG of SPEC §1, wired from tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from audiotag.config import TrainConfig, TrainOptions, load_config
from audiotag.devices import flush_denormals
from audiotag.steps.pipeline import DatasetInfo
from audiotag.tracking.runs import Tracking
from audiotag.training.stage import StageResult
from tasks.data import (
    build_feature_store,
    download_dataset,
    extract_dataset_metadata,
    filter_corrupt_files,
    make_dataset_folds,
)
from tasks.ensemble import tta_ensemble
from tasks.run import finish_tracking, start_tracking, tag_dataset
from tasks.training import fold_runner, fold_task

NO_OPTIONS = TrainOptions()


class FoldsFailed(RuntimeError):
    """One or more fold trainings failed; the finished ones are cached for a re-run."""


def _train_folds(
    workdir: str,
    info: DatasetInfo,
    store: str,
    config: TrainConfig,
    tracking: Tracking,
    dask_address: str | None,
) -> tuple[list[StageResult], list[StageResult]]:
    """Every noisy fold, then each curated fold as soon as its own noisy fold is done."""
    common = {"workdir": workdir, "info": info, "store_dir": store, "config": config}
    folds = range(config.folds.n_folds)
    with fold_runner(dask_address) as submit:
        # A dataset without a noisy subset trains the curated stage from scratch.
        noisy = {
            k: submit(
                fold_task(workdir, info, config, "noisy", k),
                **common,
                stage="noisy",
                fold=k,
                init=None,
                tracking=tracking,
            )
            for k in folds
            if info.count("noisy")
        }
        curated = {
            k: submit(
                fold_task(workdir, info, config, "curated", k),
                **common,
                stage="curated",
                fold=k,
                init=noisy.get(k),
                tracking=tracking,
            )
            for k in folds
        }
        futures = {
            **{f"noisy-fold-{k + 1}": f for k, f in noisy.items()},
            **{f"curated-fold-{k + 1}": f for k, f in curated.items()},
        }
        wait(list(futures.values()))
        names = [n for n, f in futures.items() if not f.state.is_completed()]
        if names:
            raise FoldsFailed(
                f"folds did not complete: {', '.join(names)}; re-run the flow "
                "to retrain only these (finished folds come from the cache)"
            )
        return [f.result() for f in noisy.values()], [f.result() for f in curated.values()]


@flow(name="audiotag-train", task_runner=ThreadPoolTaskRunner(max_workers=16))
def train_flow(
    source: Annotated[str, Field(min_length=1)] = "demo",
    workdir: Annotated[str, Field(min_length=1)] = "audiotag-work",
    preset: Literal["demo", "reference"] = "demo",
    options: TrainOptions = NO_OPTIONS,
    overrides: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Trains the two-stage, 5-fold ensemble and writes the submission.

    Args:
        source: 'demo' (the embedded dataset), 'kaggle' (the competition; the worker
            needs KAGGLE_USERNAME and KAGGLE_KEY), a dataset folder or the competition zip.
        workdir: Folder for data, features, fold models, cache records and runs. On a
            cluster, put it on shared storage so that finished folds survive a new container.
        preset: 'demo' is small and quick on a CPU; 'reference' is the report's recipe
            (a GPU job).
        options: The settings changed most often; an empty field keeps the preset's value.
        overrides: Any other preset field by dotted key, e.g. {"model.arch": "xresnet34"}.
        dask_address: Train the folds on this Dask cluster (tcp://host:8786), each fold
            asking for one 'GPU' resource; empty: in this flow run's own process.
    """
    flush_denormals()  # before the task threads start: they inherit it
    base = load_config(preset)
    config = load_config(preset, {**options.overrides(base), **(overrides or {})})
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_name = f"{stamp}-{flow_run.get_name() or 'local'}"
    workdir = str(Path(workdir).resolve())
    tracking = start_tracking(workdir, run_name, config, source)
    ok = False
    try:
        data_dir = download_dataset(source, workdir, config.seed)
        metadata = extract_dataset_metadata(data_dir, workdir, config.mel.silence_top_db)
        info = filter_corrupt_files(data_dir, workdir, metadata, tracking)
        tag_dataset(tracking, info.fingerprint)
        folds_file = make_dataset_folds(workdir, info, config.folds)
        store = build_feature_store(workdir, info, config, wait_for=[folds_file])

        noisy_results, curated_results = _train_folds(
            workdir, info, store, config, tracking, dask_address
        )
        result = tta_ensemble(
            workdir, info, store, config, noisy_results, curated_results, run_name, tracking
        )
        ok = True
        return {
            "run_name": run_name,
            "workdir": workdir,
            "folds": [
                {
                    "fold": c.fold + 1,
                    "curated": c.valid_lwlrap,
                    "noisy": noisy_results[i].valid_lwlrap if noisy_results else None,
                }
                for i, c in enumerate(curated_results)
            ],
            "oof_lwlrap": result.oof_lwlrap,
            "test_lwlrap": result.test_lwlrap,
            "submission": result.submission,
            "scores": result.scores,
            "model": result.model_dir,
            "mlflow_uri": tracking.uri,
            "mlflow_run_id": tracking.parent_run_id,
            "kept": info.kept,
            "rejected": info.rejected,
        }
    finally:
        finish_tracking(tracking, ok)
