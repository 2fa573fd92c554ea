"""tasks/data.py: which download failures are retried, and the data tasks in a flow run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from prefect import flow
from prefect.states import Completed, Failed, State, exception_to_failed_state

from audiotag.config import SILENCE_TOP_DB, FoldSettings
from audiotag.data.layout import read_vocabulary
from audiotag.data.metadata import dataset_fingerprint
from audiotag.sources.demo import write_demo_dataset
from audiotag.sources.kaggle import (
    DiskSpaceError,
    KaggleAccessError,
    KaggleCredentialsError,
    KaggleNetworkError,
    KaggleUnreachableError,
)
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import Tracking, start_parent
from tasks.data import (
    _retry_network_only,
    download_dataset,
    extract_dataset_metadata,
    filter_corrupt_files,
    make_dataset_folds,
)
from tests.helpers.artifacts import read_artifact


def _raised(err: Exception) -> State:
    """The Failed state Prefect makes of a task that raised ``err``."""
    try:
        raise err
    except Exception as raised:
        return asyncio.run(exception_to_failed_state(raised))


def _retried(state: State) -> bool:
    return _retry_network_only(download_dataset, None, state)


# Both ways Prefect holds an exception in a state: raised in a task, or given as data.
MAKE_STATES = pytest.mark.parametrize(
    "make_state", [_raised, lambda err: Failed(data=err)], ids=["raised", "failed-with-data"]
)


@MAKE_STATES
def test_a_network_failure_is_retried(make_state) -> None:
    assert _retried(make_state(KaggleNetworkError("Kaggle could not be reached")))


@pytest.mark.parametrize(
    "err",
    [
        KaggleCredentialsError("no credentials", status=401),
        KaggleAccessError("accept the rules", status=403),
        KaggleUnreachableError("could not connect to Kaggle: offline"),
        DiskSpaceError("the disk filled up"),
        RuntimeError("a bug"),
    ],
    ids=lambda err: type(err).__name__,
)
@MAKE_STATES
def test_other_failures_are_final(make_state, err: Exception) -> None:
    assert not _retried(make_state(err))


def test_a_completed_state_is_not_retried() -> None:
    assert not _retried(Completed(data="data"))


def test_the_download_retries_through_that_condition() -> None:
    assert download_dataset.retries >= 1
    assert download_dataset.retry_condition_fn is _retry_network_only


@flow
def prepare_data(source: str, workdir: str, tracking: Tracking) -> dict[str, Any]:
    data_dir = download_dataset(source=source, workdir=workdir)
    metadata = extract_dataset_metadata(data_dir, workdir, SILENCE_TOP_DB)
    info = filter_corrupt_files(data_dir, workdir, metadata, tracking)
    folds = make_dataset_folds(workdir, info, FoldSettings(n_folds=3))
    return {"data_dir": data_dir, "metadata": metadata, "info": info, "folds": folds}


@pytest.fixture(scope="module")
def prepared(prefect_server: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One flow run of the data tasks on a small demo archive, tracked in the work dir."""
    tmp = tmp_path_factory.mktemp("data")
    source = write_demo_dataset(tmp / "src", seed=0, scale=0.03)
    workdir = tmp / "work"
    tracking = start_parent(workdir, "data", {}, {})
    state = prepare_data(str(source), str(workdir), tracking, return_state=True)
    return {
        **state.result(),
        "ws": Workspace.at(workdir),
        "tracking": tracking,
        "flow_run_id": state.state_details.flow_run_id,
    }


def test_download_unpacks_the_archive_into_the_work_dir(prepared: dict[str, Any]) -> None:
    ws = prepared["ws"]
    assert Path(prepared["data_dir"]) == ws.data_dir
    assert (ws.data_dir / "train_curated.csv").exists()
    assert any((ws.data_dir / "train_noisy").glob("*.wav"))


def test_every_file_is_kept_or_rejected(prepared: dict[str, Any]) -> None:
    ws, info = prepared["ws"], prepared["info"]
    assert Path(prepared["metadata"]) == ws.metadata
    assert isinstance(info, DatasetInfo)
    assert info.kept + info.rejected == pq.read_metadata(ws.metadata).num_rows
    assert info.rejected > 0  # the demo has Kaggle's corrupt files and broken ones
    assert info.kept == pq.read_metadata(ws.kept).num_rows
    assert info.kept == sum(n for _, n in info.counts)
    assert info.fingerprint == dataset_fingerprint(ws.kept)
    assert info.vocab == read_vocabulary(ws.data_dir)


def test_the_folds_cover_every_kept_training_file(prepared: dict[str, Any]) -> None:
    ws = prepared["ws"]
    assert Path(prepared["folds"]) == ws.folds
    folds = pq.read_table(ws.folds).to_pylist()
    kept = pq.read_table(ws.kept).to_pylist()
    training = {(r["subset"], r["fname"]) for r in kept if r["subset"] != "test"}
    assert {(r["subset"], r["fname"]) for r in folds} == training
    assert {r["fold"] for r in folds} == {0, 1, 2}


def test_the_data_report_is_a_markdown_artifact(prepared: dict[str, Any]) -> None:
    """Its plots are in it (data URIs): the Prefect UI has no files beside it to fetch."""
    import base64

    artifact = read_artifact(prepared["flow_run_id"], "data-report")
    assert artifact.type == "markdown"
    report_dir = prepared["ws"].report_dir
    text = (report_dir / "data_report.md").read_text()
    assert artifact.data.split("## Plots")[0] == text.split("## Plots")[0]
    pngs = sorted(report_dir.glob("*.png"))
    assert len(pngs) == 4 and ".png)" not in artifact.data
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode()
        assert f"![{png.stem}](data:image/png;base64,{data})" in artifact.data


def test_the_rejected_files_are_a_table_artifact(prepared: dict[str, Any]) -> None:
    artifact = read_artifact(prepared["flow_run_id"], "rejected-files")
    assert artifact.type == "table"
    rows = json.loads(artifact.data)  # Prefect stores a table as its JSON
    rejected = pq.read_table(prepared["ws"].rejected).to_pylist()
    assert len(rows) == prepared["info"].rejected == len(rejected)
    assert {r["fname"] for r in rows} == {r["fname"] for r in rejected}
    assert all(r["reason"] for r in rows)


def test_the_report_files_are_logged_to_the_parent_run(prepared: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    tracking, ws = prepared["tracking"], prepared["ws"]
    logged = MlflowClient(tracking.uri).list_artifacts(tracking.parent_run_id, "data_report")
    names = {Path(a.path).name for a in logged}
    written = {p.name for p in ws.report_dir.iterdir()}
    assert "data_report.md" in written
    assert names == written | {ws.rejected.name}


def test_the_dataset_is_an_mlflow_input_and_the_plots_are_run_images(
    prepared: dict[str, Any],
) -> None:
    """The runs table's Datasets column names the data by its fingerprint; the run's
    charts show the report's plots."""
    from mlflow.tracking import MlflowClient

    tracking, info = prepared["tracking"], prepared["info"]
    client = MlflowClient(tracking.uri)
    run = client.get_run(tracking.parent_run_id)
    (given,) = run.inputs.dataset_inputs
    assert given.dataset.digest == info.fingerprint
    assert json.loads(given.dataset.profile)["kept"] == info.kept
    assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}
    images = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "images")}
    for plot in ("durations", "label_frequency", "labels_per_clip", "levels"):
        assert any(name.startswith(f"data_report~{plot}+") for name in images), images
