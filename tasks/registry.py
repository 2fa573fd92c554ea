"""Logging the ensemble as an MLflow model and deciding its alias."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from audiotag.serving import AudiotagModel, signature
from tasks.tracking import Tracking

MODEL_NAME = "audiotag"
REQUIREMENTS = [
    "torch==2.14.1",
    "torchaudio==2.11.0",
    "fastai==2.8.12",
    "soundfile",
    "pandas",
    "numpy",
]


def vocab_hash(vocab: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]


def register_ensemble(
    tracking: Tracking, package: Path, vocab: tuple[str, ...], oof_lwlrap: float
) -> tuple[str, str]:
    """Logs the package as a pyfunc model on the parent run and registers it.

    It gets the alias ``champion`` only when its OOF lwlrap beats the current
    champion's on the same vocabulary; otherwise ``challenger``.

    Returns:
        ``(version, alias)``.
    """
    mlflow.set_tracking_uri(tracking.uri)
    client = MlflowClient(tracking.uri)
    # MLflow's active run is thread-local: this task's thread owns it briefly.
    with mlflow.start_run(run_id=tracking.parent_run_id, nested=False):
        info = mlflow.pyfunc.log_model(
            name="audiotag-ensemble",
            python_model=AudiotagModel(),
            artifacts={"package": str(package)},
            signature=signature(vocab),
            pip_requirements=REQUIREMENTS,
            registered_model_name=MODEL_NAME,
        )
    version = str(info.registered_model_version)
    vh = vocab_hash(vocab)
    client.set_model_version_tag(MODEL_NAME, version, "oof_lwlrap", f"{oof_lwlrap:.6f}")
    client.set_model_version_tag(MODEL_NAME, version, "vocab_hash", vh)
    try:
        champ = client.get_model_version_by_alias(MODEL_NAME, "champion")
    except MlflowException:
        champ = None
    beats = champ is None or (
        champ.tags.get("vocab_hash") == vh
        and oof_lwlrap > float(champ.tags.get("oof_lwlrap", "-inf"))
    )
    alias = "champion" if beats else "challenger"
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    return version, alias
