"""Registering a training run's ensemble under the run's registered model, fairly."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger
from prefect.runtime import flow_run

from audiotag.config import TrainConfig, settings_hash
from audiotag.data.layout import AUDIO_DIRS, TRAIN_SUBSETS
from audiotag.steps.dataset import DatasetInfo, kept_rows
from audiotag.steps.ensemble import EnsembleResult
from audiotag.steps.workspace import Workspace
from audiotag.storage import file_digest
from audiotag.tracking.champion import Evidence, HeldOutClip
from audiotag.tracking.registry import register_ensemble
from audiotag.tracking.runs import Tracking


def data_folds_key(ws: Workspace, info: DatasetInfo, config: TrainConfig) -> str:
    """What an OOF score was taken on: the kept files with labels and vocabulary, each
    clip's fold, and the scored subset. Equal keys, comparable OOF scores."""
    return settings_hash(info.model_key, file_digest(ws.folds), config.last_stage.subsets[0])


def run_evidence(ws: Workspace, info: DatasetInfo, config: TrainConfig) -> Evidence:
    """The run's held-out clips (its labelled test set), the content digests of every
    clip it trained on, its data-and-folds key and its Prefect flow run."""
    data_dir = Path(info.data_dir)
    held_out = tuple(
        HeldOutClip(str(data_dir / AUDIO_DIRS["test"] / r["fname"]), tuple(r["labels"]), r["sha1"])
        for r in kept_rows(ws, "test")
        if r["labels"] and r["sha1"]
    )
    trained = frozenset(r["sha1"] for s in TRAIN_SUBSETS for r in kept_rows(ws, s) if r["sha1"])
    return Evidence(
        data_folds=data_folds_key(ws, info, config),
        held_out=held_out,
        trained=trained,
        flow_run_id=flow_run.get_id() or "",
        flow_run_url=_ui_url(),
    )


def _ui_url() -> str:
    # Prefect spells the link from PREFECT_UI_URL even when that is unset ("None/...").
    url = flow_run.get_flow_run_ui_url() or ""
    return url if url.startswith(("http://", "https://")) else ""


def register_run_model(
    ws: Workspace,
    info: DatasetInfo,
    config: TrainConfig,
    result: EnsembleResult,
    tracking: Tracking,
) -> str:
    """Registers the run's package as a version of ``config.registry.model_name``;
    returns what happened, in words (logged, and the run summary's registry line)."""
    name = config.registry.model_name
    evidence = run_evidence(ws, info, config)
    package = Path(result.model_dir)
    reg = register_ensemble(tracking, package, info.vocab, result.oof_lwlrap, evidence, name)
    if not reg.new:
        alias = f" (alias '{reg.alias}')" if reg.alias else ""
        text = (
            f"the same models are registered already: {name} version {reg.version}"
            f"{alias}; not registered again"
        )
    else:
        text = f"registered as {name} version {reg.version} with alias '{reg.alias}': {reg.reason}"
    get_run_logger().info(text)
    return text
