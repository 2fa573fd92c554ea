"""The noisy-selection task: which noisy clips a stage adds, logged and published."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from audiotag.config import TrainConfig
from audiotag.devices import device_pool
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.selection import select_noisy
from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import Tracking, log_artifact, log_metrics
from audiotag.training.stage import StageResult

ARTIFACT_ROWS = 200


def artifact_key(stage: str) -> str:
    """The Prefect artifact of a stage's selection (keys take no underscores)."""
    return f"noisy-selection-{stage.replace('_', '-')}"


# No Prefect cache: the step keys its file by what determines it and reads it back.
@task(cache_policy=NO_CACHE)
def select_noisy_clips(
    workdir: str,
    info: DatasetInfo,
    store_dir: str,
    config: TrainConfig,
    stage: str,
    init: list[StageResult],
    tracking: Tracking,
) -> str:
    """Selects the noisy clips ``stage`` adds with its init stage's fold models."""
    with device_pool().lease() as device:
        path = select_noisy(
            Workspace.at(workdir), info, Path(store_dir), config, stage, init, device
        )
    rows = pq.read_table(path).to_pylist()
    kept = sum(r["kept"] for r in rows)
    reasons = Counter(r["reason"] for r in rows)
    get_run_logger().info(
        "%s: kept %d of %d noisy clips (%s); %s",
        stage,
        kept,
        len(rows),
        ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()),
        path,
    )
    log_metrics(
        tracking,
        tracking.parent_run_id,
        {f"selection/{stage}/kept": kept, f"selection/{stage}/total": len(rows)},
    )
    log_artifact(tracking, tracking.parent_run_id, path, "selection")
    shown = sorted(rows, key=lambda r: (not r["kept"], -(r["clip_lwlrap"] or 0.0), r["fname"]))
    create_table_artifact(
        [
            {
                **r,
                "labels": ",".join(r["labels"]),
                "new_labels": ",".join(r["new_labels"]),
                "clip_lwlrap": None if r["clip_lwlrap"] is None else round(r["clip_lwlrap"], 4),
            }
            for r in shown[:ARTIFACT_ROWS]
        ],
        key=artifact_key(stage),
        description=f"{stage}: {kept} of {len(rows)} noisy clips kept (kept first)",
    )
    return str(path)
