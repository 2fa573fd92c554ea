"""The training flow: the DAG of SPEC §1, wired from tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from audiotag.config import PresetName, TrainConfig, TrainOptions, load_config
from audiotag.devices import flush_denormals
from audiotag.errors import UsageError
from audiotag.steps.baseline import BaselineResult, verdict
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.ensemble import EnsembleResult
from audiotag.steps.training import plan_stages
from audiotag.stopping import StopRequested, stop_requested
from audiotag.tracking.runs import Tracking, run_link
from audiotag.training.stage import StageResult
from tasks.baseline import baseline_task
from tasks.data import (
    build_feature_store,
    check_dataset_files,
    download_dataset,
    extract_dataset_metadata,
    filter_corrupt_files,
    make_dataset_folds,
)
from tasks.ensemble import publish_summary, tta_ensemble
from tasks.run import check_run, finish_tracking, start_tracking, tag_dataset
from tasks.selection import select_noisy_clips
from tasks.training import fold_runner, fold_task

NO_OPTIONS = TrainOptions()


class FoldsFailed(RuntimeError, UsageError):
    """One or more fold trainings failed; the finished ones are cached for a re-run."""


def _train_folds(
    workdir: str,
    info: DatasetInfo,
    store: str,
    config: TrainConfig,
    tracking: Tracking,
    dask_address: str | None,
) -> dict[str, list[StageResult]]:
    """Every planned stage's folds; fold k of a stage starts as soon as fold k of the
    stage it starts from is done. A stage that selects noisy clips starts once every
    fold of its init stage is done and their models have made its selection."""
    common = {"workdir": workdir, "info": info, "store_dir": store, "config": config}
    folds = range(config.folds.n_folds)
    futures: dict[str, dict[int, PrefectFuture]] = {}
    unstarted: list[str] = []  # stages that depend on a fold that failed
    with fold_runner(dask_address) as submit:
        for planned in plan_stages(config, info):
            selection = None
            if planned.init in unstarted:
                unstarted.append(planned.name)
                continue
            if config.stage(planned.name).noisy_selection is not None and planned.init:
                selection = _select_noisy(common, planned.name, futures[planned.init], tracking)
                if selection is None:
                    unstarted.append(planned.name)
                    continue
            futures[planned.name] = {
                k: submit(
                    fold_task(workdir, info, config, planned.name, k),
                    **common,
                    stage=planned.name,
                    fold=k,
                    init=futures[planned.init][k] if planned.init else None,
                    tracking=tracking,
                    selection=selection,
                )
                for k in folds
            }
        every = [f for by_fold in futures.values() for f in by_fold.values()]
        wait(every)
        names = [
            f"{stage}-fold-{k + 1}"
            for stage, by_fold in futures.items()
            for k, f in by_fold.items()
            if not f.state.is_completed()
        ] + [f"{stage}-fold-{k + 1}" for stage in unstarted for k in folds]
        if names and stop_requested():
            raise StopRequested(f"stopped on request; folds not finished: {', '.join(names)}")
        if names:
            raise FoldsFailed(
                f"folds did not complete: {', '.join(names)}; re-run the flow "
                "to retrain only these (finished folds come from the cache)"
            )
        return {s: [f.result() for f in by_fold.values()] for s, by_fold in futures.items()}


def _select_noisy(
    common: dict[str, Any], stage: str, init: dict[int, PrefectFuture], tracking: Tracking
) -> str | None:
    """Waits for every fold of ``stage``'s init stage, then selects the noisy clips it
    adds with their models; None when one of those folds failed."""
    wait(list(init.values()))
    if not all(f.state.is_completed() for f in init.values()):
        return None
    results = [f.result() for f in init.values()]
    return select_noisy_clips(**common, stage=stage, init=results, tracking=tracking)


@flow(name="audiotag-train", task_runner=ThreadPoolTaskRunner(max_workers=16))
def train_flow(
    source: Annotated[str, Field(min_length=1)] = "demo",
    workdir: Annotated[str, Field(min_length=1)] = "audiotag-work",
    preset: PresetName = "demo",
    options: TrainOptions = NO_OPTIONS,
    overrides: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Trains the preset's stages over its folds and writes the ensemble's submission.

    Args:
        source: 'demo' (the embedded dataset), 'kaggle' (the competition; the worker
            needs KAGGLE_API_TOKEN, or the older KAGGLE_USERNAME and KAGGLE_KEY), a
            dataset folder or the competition zip.
        workdir: Folder for data, features, fold models, cache records and runs. On a
            cluster, put it on shared storage so that finished folds survive a new container.
        preset: 'demo' is small and quick on a CPU; 'reference' is the report's recipe
            (a GPU job); 'debug' trains in seconds (for smoke tests).
        options: The settings changed most often; an empty field keeps the preset's value
            (each field's help names every preset's).
        overrides: Any other preset field by dotted key, e.g. {"model.arch": "xresnet34",
            "curated.cycles.0.lr": 0.001}; every key with each preset's value is in
            docs/config.md (or run `audiotag config show PRESET`).
        dask_address: Train the folds on this Dask cluster (tcp://host:8786), each fold
            asking for one 'GPU' resource; empty: in this flow run's own process.
    """
    flush_denormals()  # before the task threads start: they inherit it
    base = load_config(preset)
    config = load_config(preset, {**options.overrides(base), **(overrides or {})})
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_name = f"{stamp}-{flow_run.get_name() or 'local'}"
    workdir = str(Path(workdir).resolve())
    check_run(source, workdir, config)
    tracking = start_tracking(workdir, run_name, config, source)
    ok = False
    try:
        data_dir = download_dataset(source, workdir, config.seed)
        check_dataset_files(data_dir, config)
        metadata = extract_dataset_metadata(data_dir, workdir, config.mel.silence_top_db)
        info = filter_corrupt_files(data_dir, workdir, metadata, tracking)
        tag_dataset(tracking, info.fingerprint)
        folds_file = make_dataset_folds(workdir, info, config.folds)
        store = build_feature_store(workdir, info, config, wait_for=[folds_file])

        baseline = baseline_task(workdir).submit(workdir, info, store, config)
        results = _train_folds(workdir, info, store, config, tracking, dask_address)
        result = tta_ensemble(
            workdir, info, store, config, results, run_name, tracking, baseline.result()
        )
        publish_summary(workdir, run_name)
        ok = True
        summary = _run_summary(run_name, workdir, config, info, results, result, baseline.result())
        return summary | {
            "mlflow_uri": tracking.uri,
            "mlflow_run_id": tracking.parent_run_id,
            "mlflow_link": run_link(tracking, tracking.parent_run_id),
        }
    finally:
        # After a failure, closing the run must not hide its cause (on a full disk the
        # tracking store fails too): a failure to close is logged, not raised.
        closed = finish_tracking(tracking, ok, return_state=True)
        if ok:
            closed.result()


def _run_summary(
    run_name: str,
    workdir: str,
    config: TrainConfig,
    info: DatasetInfo,
    results: dict[str, list[StageResult]],
    result: EnsembleResult,
    baseline: BaselineResult,
) -> dict[str, Any]:
    """What the flow returns (the CLI prints it): scores per stage and fold, the
    ensemble's and the baseline's scores, where the outputs are."""
    folds = []
    for k in range(config.folds.n_folds):
        row: dict[str, Any] = {"fold": k + 1}
        for s in config.stage_names:  # a skipped stage (no clips) shows None
            row[s] = results[s][k].valid_lwlrap if s in results else None
        folds.append(row | {"baseline": baseline.fold_lwlrap[k]})
    return {
        "run_name": run_name,
        "workdir": workdir,
        "stages": list(config.stage_names),
        "folds": folds,
        "oof_lwlrap": result.oof_lwlrap,
        "test_lwlrap": result.test_lwlrap,
        "oof_micro_f1": result.oof_micro_f1,
        "test_micro_f1": result.test_micro_f1,
        "baseline": {"oof_lwlrap": baseline.oof_lwlrap, "test_lwlrap": baseline.test_lwlrap},
        "verdict": verdict(result.oof_lwlrap, result.test_lwlrap, baseline),
        "not_scored": list(result.not_scored),
        "submission": result.submission,
        "scores": result.scores,
        "model": result.model_dir,
        "kept": info.kept,
        "rejected": info.rejected,
    }
