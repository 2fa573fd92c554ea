"""MLflow tracking through explicit run ids (MLflow's active run is thread-local)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from audiotag.steps.workspace import Workspace
from audiotag.tracking.store import TrackingUnavailableError, check_reachable

__all__ = ["TrackingUnavailableError", "check_reachable"]  # their home is tracking.store

EXPERIMENT = "audiotag"
# MLflow 3's UI opens an experiment as a GenAI app (traces, tokens, cost) unless told
# otherwise: the experiment's kind tag says model training (the UI of MLflow 3.0-3.4 and
# Databricks read it), and every link we give carries the UI's own switch (MLflow 3.5+
# chooses the view by it, or by what the person last chose, not by the tag).
KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
UI_QUERY = "?workflowType=machine_learning"
# Where the flow's code is, for the runs table's Source column (the CLI and workers
# alike run this entrypoint).
SOURCE_NAME = "flows/train.py:train_flow"


@dataclass(frozen=True)
class Tracking:
    """Where a flow run's MLflow records go; passed to tasks, never part of a cache key."""

    uri: str
    experiment_id: str
    parent_run_id: str


def tracking_uri(workdir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite file in the work dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or Workspace.at(workdir).tracking_uri


def _git(*args: str) -> str | None:
    """``git ARGS`` in the code's checkout; None when it is not one (an installed package)."""
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def code_version() -> str:
    """The git commit of the code when it is a checkout, else the package version."""
    short = _git("rev-parse", "--short", "HEAD")
    if short:
        return short
    from audiotag import __version__

    return __version__


def source_tags() -> dict[str, str]:
    """MLflow's own source tags (the runs table's Source and the run page's git commit),
    the same on the parent run and every fold's run."""
    tags = {"mlflow.source.name": SOURCE_NAME, "mlflow.source.type": "LOCAL"}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def flatten(prefix: str, obj: Any) -> dict[str, str]:
    """Nested settings -> ``{'noisy.cycles.0.lr': '0.003'}`` for MLflow params."""
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    if isinstance(obj, list | tuple):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(f"{prefix}.{i}", v))
        return out
    return {prefix: json.dumps(obj) if not isinstance(obj, str) else obj}


def start_parent(
    workdir: Path, name: str, tags: dict[str, str], params: dict[str, str]
) -> Tracking:
    uri = tracking_uri(workdir)
    check_reachable(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        artifacts = Workspace.at(workdir).mlartifacts.as_uri() if uri.startswith("sqlite") else None
        exp_id = client.create_experiment(
            EXPERIMENT, artifact_location=artifacts, tags={KIND_TAG: KIND}
        )
    else:
        exp_id = exp.experiment_id
        if KIND_TAG not in exp.tags:  # made by an older audiotag
            client.set_experiment_tag(exp_id, KIND_TAG, KIND)
    run = client.create_run(exp_id, run_name=name, tags={**source_tags(), **tags})
    log_params(client, run.info.run_id, params)
    return Tracking(uri, exp_id, run.info.run_id)


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k, v[:6000]) for k, v in params.items()]
    for lo in range(0, len(items), 100):
        client.log_batch(run_id, params=items[lo : lo + 100])


def start_child(tracking: Tracking, name: str, params: dict[str, str]) -> str:
    client = MlflowClient(tracking.uri)
    tags = {**source_tags(), "mlflow.parentRunId": tracking.parent_run_id}
    run = client.create_run(tracking.experiment_id, run_name=name, tags=tags)
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def log_metrics(tracking: Tracking, run_id: str, values: dict[str, float], step: int = 0) -> None:
    import math
    import time

    ts = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), ts, step)
        for k, v in values.items()
        if v is not None and not math.isnan(float(v))
    ]
    client = MlflowClient(tracking.uri)
    for lo in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
        client.log_batch(run_id, metrics=metrics[lo : lo + 1000])


def log_series(tracking: Tracking, run_id: str, key: str, values: list[float | None]) -> None:
    """``values`` as one metric, the i-th at step i + 1 (fold k's score at step k): one
    chart in the UI shows every fold. None and NaN are left out."""
    import math
    import time

    ts = int(time.time() * 1000)
    metrics = [
        Metric(key, float(v), ts, step)
        for step, v in enumerate(values, 1)
        if v is not None and not math.isnan(float(v))
    ]
    if metrics:
        MlflowClient(tracking.uri).log_batch(run_id, metrics=metrics)


def log_dataset(
    tracking: Tracking, run_id: str, name: str, fingerprint: str, source: str, profile: dict
) -> None:
    """The run's training data as an MLflow dataset input (the UI's Datasets column),
    named and identified by its fingerprint; ``profile``: its counts, as JSON."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(
        name=name,
        digest=fingerprint,
        source_type="local",
        source=json.dumps({"uri": source}),
        profile=json.dumps(profile),
    )
    context = InputTag("mlflow.data.context", "training")
    MlflowClient(tracking.uri).log_inputs(run_id, [DatasetInput(dataset, [context])])


def log_images(tracking: Tracking, run_id: str, pngs: list[Path], prefix: str) -> None:
    """PNG plots as the run's images (``prefix/<stem>``), shown on the run's charts."""
    from PIL import Image

    client = MlflowClient(tracking.uri)
    for png in pngs:
        with Image.open(png) as image:
            client.log_image(run_id, image.convert("RGB"), key=f"{prefix}/{png.stem}", step=0)


def log_artifact(
    tracking: Tracking, run_id: str, path: Path | str, folder: str | None = None
) -> None:
    client = MlflowClient(tracking.uri)
    if Path(path).is_dir():
        client.log_artifacts(run_id, str(path), folder)
    else:
        client.log_artifact(run_id, str(path), folder)


def set_parent_tag(tracking: Tracking, key: str, value: str) -> None:
    """Tags the flow run's parent run (a fact known only after it started, e.g. the data)."""
    MlflowClient(tracking.uri).set_tag(tracking.parent_run_id, key, value)


def end_run(tracking: Tracking, run_id: str, ok: bool) -> None:
    status = RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED)
    MlflowClient(tracking.uri).set_terminated(run_id, status)


def as_dict(tracking: Tracking) -> dict[str, str]:
    return asdict(tracking)


# Where people open MLflow when the tracking URI is a file store (`make server` starts it).
MLFLOW_UI_ENV = "AUDIOTAG_MLFLOW_UI"


def run_link(tracking: Tracking, run_id: str) -> str:
    """The MLflow UI's address of a run: the tracking server's, else AUDIOTAG_MLFLOW_UI's."""
    return f"{experiment_link(tracking)[: -len(UI_QUERY)]}/{run_id}{UI_QUERY}"


def experiment_link(tracking: Tracking) -> str:
    """The MLflow UI's address of the experiment's runs, in its model-training view."""
    if tracking.uri.startswith(("http://", "https://")):
        base = tracking.uri
    else:
        base = os.environ.get(MLFLOW_UI_ENV, "http://127.0.0.1:5000")
    return f"{base.rstrip('/')}/#/experiments/{tracking.experiment_id}/runs{UI_QUERY}"


def child_runs(tracking: Tracking) -> dict[str, str]:
    """Run name -> id of the parent run's nested runs (the folds this flow run trained)."""
    runs = MlflowClient(tracking.uri).search_runs(
        [tracking.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{tracking.parent_run_id}'",
        max_results=1000,
    )
    return {r.info.run_name: r.info.run_id for r in sorted(runs, key=lambda r: r.info.run_name)}
