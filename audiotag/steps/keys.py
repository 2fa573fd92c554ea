"""What determines each step's result: the keys of caches and model folders (SPEC §5)."""

from __future__ import annotations

import json
from pathlib import Path

from audiotag.config import TrainConfig, settings_hash
from audiotag.steps.workspace import Workspace
from audiotag.storage import file_digest


def stage_key(config: TrainConfig, stage: str, data_key: str) -> str:
    """What determines a stage's weights: data, shared settings, this stage's settings
    and those of the stages it starts from, seed.

    ``data_key`` is ``DatasetInfo.model_key`` (kept files, labels, vocabulary).
    Evaluation and registry settings are left out (they do not change weights), and so
    are later or unrelated stages: changing them never retrains this one.
    """
    parts = config.model_dump(mode="json", exclude={"eval", "preset", "registry", "stages"})
    parts["stages"] = [st.model_dump(mode="json") for st in config.lineage(stage)]
    return settings_hash(data_key, stage, json.dumps(parts, sort_keys=True))


def fold_result_key(
    config: TrainConfig,
    stage: str,
    fold: int,
    data_key: str,
    init_model: Path | None,
) -> str:
    """What determines a fold's result (SPEC §5), and nothing else.

    The stage's own settings (``stage_key``: data, settings up to this stage, seed),
    the fold, the bytes of the weights it starts from, and how validation clips are
    scored (windows, pooling). Test-time settings (TTA passes, the ensemble mean) and a
    later stage's settings are left out: changing them never retrains a fold.
    """
    scoring = (config.eval.window_overlap, config.eval.pooling)
    init = file_digest(init_model) if init_model is not None else "scratch"
    return settings_hash(stage_key(config, stage, data_key), fold, *scoring, init)


def fold_model_path(
    ws: Workspace, config: TrainConfig, stage: str, fold: int, data_key: str
) -> Path:
    """Where ``train_fold`` writes the stage's model for this fold."""
    return ws.stage_dir(stage_key(config, stage, data_key), stage, fold) / "model.pt"


def feature_key(config: TrainConfig, fingerprint: str) -> str:
    """The feature store's key: the kept files and the mel settings."""
    return settings_hash(fingerprint, config.mel)
