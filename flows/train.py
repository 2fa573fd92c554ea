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

from audiotag.config import load_config
from tasks.data import (
    build_feature_store,
    download_dataset,
    extract_dataset_metadata,
    filter_corrupt_files,
    make_dataset_folds,
)
from tasks.ensemble import tta_ensemble
from tasks.run import finish_tracking, start_tracking, tag_dataset
from tasks.training import fold_cache_policy, train_stage_fold


class FoldsFailed(RuntimeError):
    """One or more fold trainings failed; the finished ones are cached for a re-run."""


@flow(name="audiotag-train", task_runner=ThreadPoolTaskRunner(max_workers=16))
def train_flow(
    source: Annotated[
        str, Field(description="'demo', 'kaggle', a dataset directory or the competition zip")
    ] = "demo",
    workdir: Annotated[
        str, Field(description="Work directory: cache, models, runs")
    ] = "audiotag-work",
    preset: Annotated[Literal["demo", "reference"], Field(description="Recipe preset")] = "demo",
    overrides: Annotated[
        dict[str, Any] | None,
        Field(description='Preset fields to change, e.g. {"noisy.batch_size": 32}'),
    ] = None,
) -> dict[str, Any]:
    """Trains the two-stage, 5-fold ensemble and writes the submission."""
    config = load_config(preset, overrides)
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

        fold_task = train_stage_fold.with_options(cache_policy=fold_cache_policy(workdir))
        folds = range(config.folds.n_folds)
        # A dataset without a noisy subset trains the curated stage from scratch.
        noisy = {
            k: fold_task.with_options(task_run_name=f"noisy-fold-{k + 1}").submit(
                workdir, info, store, config, "noisy", k, None, tracking
            )
            for k in folds
            if info.count("noisy")
        }
        # Each curated fold waits only for its own noisy fold.
        curated = {
            k: fold_task.with_options(task_run_name=f"curated-fold-{k + 1}").submit(
                workdir, info, store, config, "curated", k, noisy.get(k), tracking
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
        noisy_results = [f.result() for f in noisy.values()]
        curated_results = [f.result() for f in curated.values()]
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
