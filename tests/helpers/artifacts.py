"""Reading back what a flow run published to the Prefect server."""

from __future__ import annotations

from typing import Any
from uuid import UUID


def read_artifact(flow_run_id: UUID | str, key: str) -> Any:
    """The flow run's one artifact called ``key`` (a table's ``data`` is its JSON)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))]),
            )
        )
    assert len(found) == 1, f"{len(found)} artifacts {key!r} in flow run {flow_run_id}"
    return found[0]
