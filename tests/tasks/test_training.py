"""tasks/training.py: what a fold's cache key depends on, the fold task's options, the GPU slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audiotag.config import TrainConfig, load_config
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.keys import fold_model_path
from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import Tracking
from audiotag.training.stage import StageResult
from tasks.training import GPU_LIMIT, fold_cache_key, fold_task, gpu_slot

INFO = DatasetInfo("/data", "fingerprint-0", ("Bark", "Run"), 40, 2, (("curated", 40),))
TRACKING = Tracking("sqlite:///one.db", "1", "run-1")


def _init(path: Path, weights: bytes) -> StageResult:
    """A finished noisy fold whose model file holds ``weights``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(weights)
    return StageResult("noisy", 0, str(path), 0.5, 0.1)


def _parameters(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """The curated stage's fold 0 parameters as the flow passes them, with ``changes``."""
    parameters = {
        "workdir": str(tmp_path / "work"),
        "info": INFO,
        "store_dir": str(tmp_path / "work" / "features" / "abc"),
        "config": load_config("debug"),
        "stage": "curated",
        "fold": 0,
        "tracking": TRACKING,
    }
    parameters.update(changes)
    if "init" not in changes:
        parameters["init"] = _init(tmp_path / "noisy" / "model.pt", b"weights-a")
    return parameters


def _key(parameters: dict[str, Any]) -> str:
    return fold_cache_key(None, parameters)  # type: ignore[arg-type] - no run context needed


def test_fold_cache_key_ignores_the_tracking_record(tmp_path: Path) -> None:
    # Every flow run opens new MLflow runs: a re-run must still find its folds.
    other = Tracking("http://mlflow:5000", "7", "run-2")
    assert _key(_parameters(tmp_path)) == _key(_parameters(tmp_path, tracking=other))


def _debug(**overrides: Any) -> TrainConfig:
    return load_config("debug", overrides)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda tmp: {"config": _debug(**{"curated.batch_size": 12})}, id="stage"),
        pytest.param(
            lambda tmp: {"config": _debug(**{"noisy.batch_size": 12})}, id="stage-it-starts-from"
        ),
        pytest.param(lambda tmp: {"config": _debug(seed=1)}, id="seed"),
        pytest.param(lambda tmp: {"config": _debug(**{"eval.pooling": "max"})}, id="scoring"),
        pytest.param(lambda tmp: {"fold": 1}, id="fold"),
        pytest.param(
            # The same file, retrained: other bytes at the same path.
            lambda tmp: {"init": _init(tmp / "noisy" / "model.pt", b"weights-b")},
            id="init-bytes",
        ),
        pytest.param(lambda tmp: {"init": None}, id="from-scratch"),
        pytest.param(
            lambda tmp: {"info": DatasetInfo("/data", "fingerprint-1", INFO.vocab, 40, 2)},
            id="data",
        ),
        pytest.param(lambda tmp: {"workdir": str(tmp / "elsewhere")}, id="workdir"),
        pytest.param(lambda tmp: {"store_dir": str(tmp / "other-store")}, id="store-dir"),
    ],
)
def test_fold_cache_key_changes_with_what_the_fold_depends_on(tmp_path: Path, change) -> None:
    before = _key(_parameters(tmp_path))
    after = _key(_parameters(tmp_path, **change(tmp_path)))
    assert before != after


def test_fold_cache_key_reads_the_initial_weights_bytes_not_their_path(tmp_path: Path) -> None:
    copy = _init(tmp_path / "copy" / "model.pt", b"weights-a")
    assert _key(_parameters(tmp_path)) == _key(_parameters(tmp_path, init=copy))


@pytest.mark.parametrize(
    ("stage", "overrides"),
    [
        pytest.param("curated", {"eval.tta": 4}, id="tta"),
        pytest.param("curated", {"eval.ensemble": "gmean"}, id="ensemble-mean"),
        pytest.param("noisy", {"eval.tta": 4}, id="tta-first-stage"),
        pytest.param("noisy", {"curated.cycles": [{"epochs": 3, "lr": 1e-3}]}, id="later-stage"),
    ],
)
def test_fold_cache_key_ignores_later_stages_and_test_time_settings(
    tmp_path: Path, stage: str, overrides: dict[str, Any]
) -> None:
    # Neither retrains a fold: they change only what is done with its model.
    init = None if stage == "noisy" else _init(tmp_path / "noisy" / "model.pt", b"weights-a")
    fold = {"stage": stage, "init": init}
    config = _debug(**overrides)
    assert _key(_parameters(tmp_path, **fold)) == _key(_parameters(tmp_path, **fold, config=config))


def test_fold_task_is_named_after_its_stage_and_one_based_fold(tmp_path: Path) -> None:
    task = fold_task(str(tmp_path), INFO, load_config("debug"), "curated", 2)
    assert task.task_run_name == "curated-fold-3"
    assert (
        task.name == "curated-fold-3"
    )  # a run waiting for its init shows this, not train_stage_fold


def test_fold_task_keeps_cache_records_and_results_in_the_work_dir(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "work")
    task = fold_task(str(tmp_path / "work"), INFO, load_config("debug"), "noisy", 0)
    assert task.cache_policy.key_storage == str(ws.cache_keys)
    assert Path(task.result_storage) == ws.results
    assert task.persist_result
    keyed_by = [getattr(p, "cache_key_fn", None) for p in task.cache_policy.policies]
    assert fold_cache_key in keyed_by


def test_fold_task_refreshes_its_cache_only_when_the_model_file_is_gone(tmp_path: Path) -> None:
    workdir, config = str(tmp_path / "work"), load_config("debug")
    model = fold_model_path(Workspace.at(workdir), config, "noisy", 1, INFO.model_key)
    assert fold_task(workdir, INFO, config, "noisy", 1).refresh_cache is True
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    assert fold_task(workdir, INFO, config, "noisy", 1).refresh_cache is False
    # Another fold's model is still missing.
    assert fold_task(workdir, INFO, config, "noisy", 2).refresh_cache is True


def test_a_cpu_fold_takes_no_gpu_slot(prefect_server: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=1)
        )
        try:

            def active() -> int:
                return client.read_global_concurrency_limit_by_name(GPU_LIMIT).active_slots

            with gpu_slot("cpu"):
                assert active() == 0
            with gpu_slot("cuda:0"):  # the same check sees a GPU fold's slot
                assert active() == 1
            assert active() == 0
        finally:
            client.delete_global_concurrency_limit_by_name(GPU_LIMIT)


def test_artifact_keys_are_what_prefect_accepts() -> None:
    from tasks.training import artifact_key

    assert artifact_key("noisy-fold-1-progress") == "noisy-fold-1-progress"
    assert artifact_key("Plus_Noisy fold 2--progress") == "plus-noisy-fold-2-progress"
