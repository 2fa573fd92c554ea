"""audiotag.tracking.runs against a real SQLite MLflow store in tmp_path."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import (
    MLFLOW_UI_ENV,
    Tracking,
    TrackingUnavailableError,
    check_reachable,
    child_runs,
    end_run,
    experiment_link,
    flatten,
    log_artifact,
    log_metrics,
    run_link,
    set_parent_tag,
    start_child,
    start_parent,
    tracking_uri,
)


def test_flatten_names_nested_settings_by_dotted_paths() -> None:
    settings = {"noisy": {"cycles": [{"lr": 0.003, "epochs": 2}]}, "preset": "demo", "tta": None}
    assert flatten("", settings) == {
        "noisy.cycles.0.lr": "0.003",
        "noisy.cycles.0.epochs": "2",
        "preset": "demo",  # a string as it is, not JSON-quoted
        "tta": "null",
    }
    assert flatten("eval", {"windows": (1, True)}) == {
        "eval.windows.0": "1",
        "eval.windows.1": "true",
    }


def test_the_tracking_uri_is_the_work_dirs_sqlite_file_unless_the_environment_names_one(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tracking_uri(workdir) == Workspace.at(workdir).tracking_uri
    assert tracking_uri(workdir) == f"sqlite:///{workdir.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri(workdir) == "http://127.0.0.1:5999"


def test_a_parent_run_its_children_metrics_tags_and_artifacts_land_in_the_store(
    workdir: Path, tmp_path: Path
) -> None:
    workdir.mkdir()
    many = {f"p{i:03d}": "x" * (7000 if i == 0 else 1) for i in range(150)}  # > one batch
    tracking = start_parent(workdir, "run-1", {"audiotag.preset": "debug"}, many)
    assert tracking.uri == Workspace.at(workdir).tracking_uri
    client = MlflowClient(tracking.uri)
    exp = client.get_experiment(tracking.experiment_id)
    assert exp.name == "audiotag"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # not GenAI
    assert exp.artifact_location == Workspace.at(workdir).mlartifacts.as_uri()

    parent = client.get_run(tracking.parent_run_id)
    assert parent.info.run_name == "run-1"
    assert parent.data.tags["audiotag.preset"] == "debug"
    assert len(parent.data.params) == 150
    assert parent.data.params["p000"] == "x" * 6000  # MLflow's limit on a param's value

    fold = start_child(tracking, "fold-1", {"fold": "1"})
    log_metrics(tracking, fold, {"valid/lwlrap": 0.5, "skipped": math.nan}, step=3)
    log_metrics(tracking, fold, {})  # nothing to log: no call
    child = client.get_run(fold)
    assert child.data.tags["mlflow.parentRunId"] == tracking.parent_run_id
    for run in (parent, child):  # the runs table's Source column, the commit on each run
        assert run.data.tags["mlflow.source.name"] == "flows/train.py:train_flow"
        assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    assert child.data.params == {"fold": "1"}
    assert child.data.metrics == {"valid/lwlrap": 0.5}
    assert [m.step for m in client.get_metric_history(fold, "valid/lwlrap")] == [3]
    assert child_runs(tracking) == {"fold-1": fold}

    set_parent_tag(tracking, "audiotag.dataset_fingerprint", "abc123")
    assert client.get_run(tracking.parent_run_id).data.tags["audiotag.dataset_fingerprint"] == (
        "abc123"
    )

    (tmp_path / "report.md").write_text("# report\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.txt").write_text("a\n")
    log_artifact(tracking, fold, tmp_path / "report.md")
    log_artifact(tracking, fold, tmp_path / "plots", "figures")
    assert sorted(a.path for a in client.list_artifacts(fold)) == ["figures", "report.md"]
    assert [a.path for a in client.list_artifacts(fold, "figures")] == ["figures/a.txt"]

    end_run(tracking, fold, ok=False)
    end_run(tracking, tracking.parent_run_id, ok=True)
    assert client.get_run(fold).info.status == "FAILED"
    assert client.get_run(tracking.parent_run_id).info.status == "FINISHED"

    again = start_parent(workdir, "run-2", {}, {})  # the next flow run, same experiment
    assert (again.experiment_id, again.uri) == (tracking.experiment_id, tracking.uri)
    assert again.parent_run_id != tracking.parent_run_id


def test_run_link_points_at_the_tracking_server_else_at_the_ui_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Links open MLflow 3's model-training view (its default is the GenAI overview)."""
    monkeypatch.delenv(MLFLOW_UI_ENV, raising=False)
    ml = "?workflowType=machine_learning"
    server = Tracking("http://mlflow.example:5000/", "7", "p")
    assert run_link(server, "r1") == f"http://mlflow.example:5000/#/experiments/7/runs/r1{ml}"
    assert experiment_link(server) == f"http://mlflow.example:5000/#/experiments/7/runs{ml}"
    local = Tracking("sqlite:////w/mlflow.db", "7", "p")
    assert run_link(local, "r1") == f"http://127.0.0.1:5000/#/experiments/7/runs/r1{ml}"
    monkeypatch.setenv(MLFLOW_UI_ENV, "http://ui.example:8080/")
    assert run_link(local, "r1") == f"http://ui.example:8080/#/experiments/7/runs/r1{ml}"


def test_a_tracking_server_that_is_not_there_is_named_and_a_file_store_never_checked() -> None:
    check_reachable("sqlite:////nowhere/mlflow.db")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingUnavailableError, match=f"127.0.0.1:{port} is not reachable"):
        check_reachable(f"http://127.0.0.1:{port}", timeout=2.0)
