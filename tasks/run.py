"""Tasks that open and close a flow run's MLflow parent run."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.context import FlowRunContext

from audiotag.config import TrainConfig
from audiotag.tracking.runs import (
    Tracking,
    code_version,
    end_run,
    flatten,
    set_parent_tag,
    start_parent,
)


# A tracking server that is down fails the run fast (two quick retries), before any
# training whose records would be lost.
@task(retries=2, retry_delay_seconds=2)
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
