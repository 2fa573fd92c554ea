"""Tasks that open and close a flow run's MLflow parent run."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.context import FlowRunContext

from audiotag.config import TrainConfig
from audiotag.errors import UsageError
from audiotag.steps.preflight import check_source, check_workdir
from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import (
    Tracking,
    code_version,
    end_run,
    flatten,
    set_parent_tag,
    start_parent,
    tracking_uri,
)
from audiotag.tracking.store import check_tracking_store


def _retry_unless_usage_error(task, task_run, state) -> bool:  # noqa: ANN001 - prefect's hook
    """A dropped connection may heal; a cause the user must fix (UsageError) will not."""
    try:
        state.result()
    except UsageError:
        return False
    except Exception:  # noqa: BLE001 - anything else is worth another try
        return True
    return False


@task
def check_run(source: str, workdir: str, config: TrainConfig) -> None:
    """Fails the run before any work when it cannot succeed, naming the first cause: the
    work dir (writable, room), the tracking store, the source (the CLI checks them too)."""
    ws = Workspace.at(workdir)
    check_workdir(ws)
    check_tracking_store(tracking_uri(ws.root))
    check_source(source, config)


# A tracking server that is down fails the run fast (two quick retries), before any
# training whose records would be lost; a store that cannot be opened is not retried.
@task(retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_unless_usage_error)
def start_tracking(workdir: str, run_name: str, config: TrainConfig, source: str) -> Tracking:
    """Opens the parent MLflow run, tagged with the flow-run id and code version."""
    ctx = FlowRunContext.get()
    tags = {
        "audiotag.code_version": code_version(),
        "audiotag.preset": config.preset,
        "audiotag.source": source,
    }
    if ctx is not None and ctx.flow_run is not None:
        tags["prefect.flow_run_id"] = str(ctx.flow_run.id)
        tags["prefect.flow_run_name"] = ctx.flow_run.name
    tracking = start_parent(
        Path(workdir), run_name, tags, flatten("", config.model_dump(mode="json"))
    )
    get_run_logger().info("MLflow run %s at %s", tracking.parent_run_id, tracking.uri)
    return tracking


@task
def tag_dataset(tracking: Tracking, fingerprint: str) -> None:
    """Tags the parent run with the dataset fingerprint once it is known."""
    set_parent_tag(tracking, "audiotag.dataset_fingerprint", fingerprint)


@task
def finish_tracking(tracking: Tracking, ok: bool) -> None:
    """Closes the parent run as FINISHED or FAILED."""
    end_run(tracking, tracking.parent_run_id, ok)
