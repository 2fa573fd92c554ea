"""End to end: the whole DAG on a tiny demo dataset, with a real Prefect server and MLflow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from audiotag.demo import write_demo_dataset

pytestmark = pytest.mark.slow

# Small enough for CI: one epoch per stage, a narrow net.
TINY = {
    "model.widen": 0.25,
    "noisy.cycles": [{"epochs": 1, "lr": 3e-3}],
    "curated.cycles": [{"epochs": 1, "lr": 2e-3}],
    "curated.min_steps": 0,
    "eval.tta": 1,
}


def _task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name: r.state.name for r in runs if "fold" in r.name}


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("src"), seed=3, scale=0.12)


def test_failed_fold_reruns_alone_and_flow_completes(
    tiny_source: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.train import train_flow
    from tasks.training import FAIL_ENV

    workdir = isolated_env / "work"
    with prefect_test_harness(server_startup_timeout=60):
        monkeypatch.setenv(FAIL_ENV, "noisy:3")
        failed = train_flow(
            source=str(tiny_source),
            workdir=str(workdir),
            preset="demo",
            overrides=TINY,
            return_state=True,
        )
        assert failed.is_failed()
        assert "noisy-fold-3" in str(failed.message) or "noisy-fold-3" in repr(
            failed.result(raise_on_failure=False)
        )
        first = _task_states(failed.state_details.flow_run_id)
        assert first["noisy-fold-3"] == "Failed"
        assert {first[f"noisy-fold-{k}"] for k in (1, 2, 4, 5)} == {"Completed"}
        assert {first[f"curated-fold-{k}"] for k in (1, 2, 4, 5)} == {"Completed"}

        monkeypatch.delenv(FAIL_ENV)
        state = train_flow(
            source=str(tiny_source),
            workdir=str(workdir),
            preset="demo",
            overrides=TINY,
            return_state=True,
        )
        assert state.is_completed()
        second = _task_states(state.state_details.flow_run_id)
        for k in (1, 2, 4, 5):
            assert second[f"noisy-fold-{k}"] == "Cached"
            assert second[f"curated-fold-{k}"] == "Cached"
        assert second["noisy-fold-3"] == "Completed"
        assert second["curated-fold-3"] == "Completed"
        summary = state.result()

    # The submission: every sample_submission row, its column order, probabilities.
    sub = pd.read_csv(summary["submission"])
    import zipfile

    with zipfile.ZipFile(tiny_source) as zf, zf.open("sample_submission.csv") as f:
        sample = pd.read_csv(f)
    assert list(sub.columns) == list(sample.columns)
    assert list(sub.fname) == list(sample.fname)
    assert sub.iloc[:, 1:].to_numpy().min() >= 0 and sub.iloc[:, 1:].to_numpy().max() <= 1

    # MLflow: parent run tagged and scored; a nested run per stage and fold.
    client = MlflowClient(summary["mlflow_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.data.tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    assert parent.data.tags["audiotag.dataset_fingerprint"]
    assert parent.data.metrics["oof/lwlrap"] == pytest.approx(summary["oof_lwlrap"])
    assert "test/lwlrap" in parent.data.metrics
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    # This run trained noisy 3 and curated 3; the cached folds' runs belong to the first.
    assert sorted(r.info.run_name for r in children) == ["curated-fold-3", "noisy-fold-3"]
    for child in children:
        history = client.get_metric_history(child.info.run_id, "valid/lwlrap")
        assert len(history) == 1
        assert {"train/loss", "valid/loss"} <= set(child.data.metrics)
        assert any(a.path == "model" for a in client.list_artifacts(child.info.run_id))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"submission.csv", "scores.json", "oof.parquet", "data_report"} <= artifacts
