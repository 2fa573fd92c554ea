"""tasks/run.py: the MLflow parent run a flow run opens, tags and closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from audiotag.config import load_config
from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import Tracking, code_version
from tasks.run import finish_tracking, start_tracking, tag_dataset

FINGERPRINT = "fingerprint-0123"


@flow
def open_and_close(workdir: str) -> dict[str, Tracking]:
    """One parent run that finishes with a dataset tag, one that fails without."""
    config = load_config("debug")
    ok = start_tracking(workdir, "ok-run", config, "demo")
    tag_dataset(ok, FINGERPRINT)
    finish_tracking(ok, True)
    failed = start_tracking(workdir, "failed-run", config, "/data/fat2019.zip")
    finish_tracking(failed, False)
    return {"ok": ok, "failed": failed}


@pytest.fixture(scope="module")
def tracked(prefect_server: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The flow run above, then a parent run opened outside any flow; their MLflow runs."""
    from mlflow.tracking import MlflowClient
    from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

    workdir = str(tmp_path_factory.mktemp("run") / "work")
    state = open_and_close(workdir, return_state=True)
    out: dict[str, Any] = dict(state.result())
    # Its logs have no flow run to go to: expected here, not worth a warning.
    with temporary_settings(updates={PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        out["no-flow"] = start_tracking(workdir, "no-flow", load_config("debug"), "demo")
    client = MlflowClient(out["ok"].uri)
    return {
        "workdir": workdir,
        "flow_run_id": str(state.state_details.flow_run_id),
        "tracking": out,
        "runs": {name: client.get_run(t.parent_run_id) for name, t in out.items()},
    }


def test_the_parent_run_is_tracked_in_the_work_dir(tracked: dict[str, Any]) -> None:
    uris = {t.uri for t in tracked["tracking"].values()}
    assert uris == {Workspace.at(tracked["workdir"]).tracking_uri}
    assert tracked["runs"]["ok"].info.run_name == "ok-run"


def test_start_tracking_tags_the_code_preset_source_and_flow_run(tracked: dict[str, Any]) -> None:
    ok, failed = tracked["runs"]["ok"].data.tags, tracked["runs"]["failed"].data.tags
    assert ok["audiotag.code_version"] == code_version()
    assert ok["audiotag.preset"] == "debug"
    assert ok["audiotag.source"] == "demo"
    assert failed["audiotag.source"] == "/data/fat2019.zip"
    assert ok["prefect.flow_run_id"] == failed["prefect.flow_run_id"] == tracked["flow_run_id"]


def test_start_tracking_logs_the_settings_as_params(tracked: dict[str, Any]) -> None:
    params = tracked["runs"]["ok"].data.params
    assert params["preset"] == "debug"
    assert params["stages.1.init"] == "noisy"


def test_outside_a_flow_no_flow_run_is_tagged(tracked: dict[str, Any]) -> None:
    tags = tracked["runs"]["no-flow"].data.tags
    assert tags["audiotag.preset"] == "debug"
    assert "prefect.flow_run_id" not in tags


def test_finish_tracking_closes_the_run_finished_or_failed(tracked: dict[str, Any]) -> None:
    runs = tracked["runs"]
    assert runs["ok"].info.status == "FINISHED"
    assert runs["failed"].info.status == "FAILED"
    assert runs["no-flow"].info.status == "RUNNING"  # nothing closed it
    assert runs["ok"].info.end_time and runs["failed"].info.end_time


def test_tag_dataset_tags_the_fingerprint(tracked: dict[str, Any]) -> None:
    assert tracked["runs"]["ok"].data.tags["audiotag.dataset_fingerprint"] == FINGERPRINT
    assert "audiotag.dataset_fingerprint" not in tracked["runs"]["failed"].data.tags
