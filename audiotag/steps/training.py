"""The training steps: which stages run on this dataset, and one stage's fold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiotag.config import TrainConfig
from audiotag.data.schemas import label_table, write_label_table
from audiotag.features.store import FeatureStore
from audiotag.steps.dataset import DatasetInfo, stage_rows, to_clips
from audiotag.steps.keys import fold_model_path
from audiotag.steps.workspace import Workspace
from audiotag.training.stage import EpochRecord, StageJob, StageResult, train_stage


@dataclass(frozen=True)
class PlannedStage:
    """A stage that runs on this dataset, and the planned stage it starts from."""

    name: str
    init: str | None


def plan_stages(config: TrainConfig, info: DatasetInfo) -> tuple[PlannedStage, ...]:
    """The config's stages that have data to be scored on, each with what it starts from.

    A stage whose first subset has no kept clips is skipped (a dataset without noisy
    clips has no noisy stage), and a stage that would start from a skipped one starts
    from what that one would have started from: from scratch, at the start.

    Raises:
        ValueError: the last stage (the ensemble's) has nothing to train on.
    """
    skipped = {st.name for st in config.stages if not info.count(st.subsets[0])}
    last = config.last_stage
    if last.name in skipped:
        raise ValueError(
            f"the last stage {last.name!r} trains on {last.subsets[0]!r}, which has no kept "
            "clips: there is nothing to build the ensemble from"
        )
    plan = []
    for st in config.stages:
        if st.name in skipped:
            continue
        init = st.init
        while init is not None and init in skipped:
            init = config.stage(init).init
        plan.append(PlannedStage(st.name, init))
    return tuple(plan)


def train_fold(
    ws: Workspace,
    info: DatasetInfo,
    store_dir: Path,
    config: TrainConfig,
    stage: str,
    fold: int,
    init_weights: Path | None = None,
    device: str = "cpu",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    selection: Path | None = None,
    init_learned: bool = True,
) -> StageResult:
    """Trains ``stage`` on fold ``fold`` of its subsets; resumes from checkpoints.

    ``selection``: the stage's noisy selection file (`audiotag.steps.selection`), whose
    kept clips it also trains on. Writes ``valid.parquet`` beside the model: the
    held-out clips' probabilities. ``init_learned``: whether the initial weights learned
    anything (``StageResult.learned``); when not, the fold gets the from-scratch floor.
    """
    store = FeatureStore.open(store_dir)
    train_rows, valid_rows = stage_rows(ws, config.stage(stage), fold, selection)
    out_dir = fold_model_path(ws, config, stage, fold, info.model_key).parent
    job = StageJob(
        data=store.data,
        train=to_clips(store, train_rows, info.vocab),
        valid=to_clips(store, valid_rows, info.vocab),
        vocab=info.vocab,
        config=config,
        stage=stage,
        fold=fold,
        out_dir=out_dir,
        init_weights=init_weights,
        device=device,
        from_scratch=init_weights is None or not init_learned,
    )
    result = train_stage(job, on_epoch)
    probs = np.load(out_dir / "valid_probs.npy")
    names = [r["fname"] for r in valid_rows]
    frame = label_table(names, fold, probs, info.vocab)
    write_label_table(frame, info.vocab, out_dir / "valid.parquet")
    return result
