"""Logging the ensemble as an MLflow model and deciding its alias."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from audiotag.inference.tagging import Ensemble, package_digest
from audiotag.tracking.pyfunc import signature
from audiotag.tracking.runs import Tracking

MODEL_NAME = "audiotag"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
# Logged from code (the file), not as a pickled object.
SERVING_MODEL = str(Path(__file__).with_name("serving_model.py"))
# The distributions the served model imports when it loads: the pyfunc model and what
# it imports (inference, features, training.models and .batches, config, storage).
# torchvision: fastai.vision imports it, and an unpinned one would pull in another torch.
# MLflow adds its own pin to the model's requirements.
SERVED_DISTRIBUTIONS = (
    "torch",
    "torchvision",
    "torchaudio",
    "fastai",
    "fastcore",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic",
    "soundfile",
    "soxr",
)


def served_requirements() -> list[str]:
    """The served model's pip requirements, pinned as the installed audiotag's metadata
    (``pyproject.toml``'s dependencies) pins them, in ``SERVED_DISTRIBUTIONS``' order.

    Raises:
        RuntimeError: audiotag's metadata lacks one of them (a stale install).
    """
    pins = {}
    # packaging parses the metadata's requirement lines; MLflow itself depends on it.
    for line in importlib.metadata.requires("audiotag") or []:
        req = Requirement(line)
        if req.marker is None:  # extras (dev) have a marker; the served model has none
            pins[canonicalize_name(req.name)] = str(req)
    missing = [d for d in SERVED_DISTRIBUTIONS if canonicalize_name(d) not in pins]
    if missing:
        raise RuntimeError(
            f"audiotag's installed metadata does not require {missing}; "
            "reinstall it (pip install -e .) after changing pyproject.toml"
        )
    return [pins[canonicalize_name(d)] for d in SERVED_DISTRIBUTIONS]


@contextmanager
def _tracking_uri_while(uri: str) -> Iterator[None]:
    """MLflow's default tracking URI set to ``uri`` for the block, then put back.

    MLflow's own ``_use_tracking_uri`` puts back its global but, when that was unset,
    deletes ``MLFLOW_TRACKING_URI`` from the environment: a user's setting would vanish
    for every later run in the process (a worker, a notebook, a test's second flow).
    """
    before = os.environ.get(ENV_TRACKING_URI)
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if before is None:
            os.environ.pop(ENV_TRACKING_URI, None)
        else:
            os.environ[ENV_TRACKING_URI] = before


# MLflow draws a "Downloading artifacts" bar for every model it logs or loads; in
# audiotag's terminal and logs they are noise (a few small files, read in a second).
QUIET_ARTIFACTS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def _quiet_artifact_bars() -> None:
    """No artifact bars in this process, unless the user asked for them."""
    os.environ.setdefault(QUIET_ARTIFACTS_ENV, "false")


def vocab_hash(vocab: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Registration:
    version: str
    alias: str  # 'champion', 'challenger', or '' for an earlier version that has none now
    new: bool  # False: the same package was already registered (a re-run from the cache)


def register_ensemble(
    tracking: Tracking, package: Path, vocab: tuple[str, ...], oof_lwlrap: float
) -> Registration:
    """Logs the package as a pyfunc model on the parent run and registers it.

    It gets the alias ``champion`` only when its OOF lwlrap beats the current
    champion's on the same vocabulary; otherwise ``challenger``. A package whose
    files equal those of a registered version (every fold from the cache) is not
    registered again: that version is returned.
    """
    _quiet_artifact_bars()
    client = MlflowClient(tracking.uri)
    digest = package_digest(package)
    same = client.search_model_versions(
        f"name = '{MODEL_NAME}' and tags.package_digest = '{digest}'"
    )
    if same:
        newest = max(int(v.version) for v in same)
        mv = client.get_model_version(MODEL_NAME, str(newest))  # search leaves aliases out
        alias = next((a for a in ("champion", "challenger") if a in mv.aliases), "")
        return Registration(str(mv.version), alias, new=False)
    # log_model has no tracking URI argument; set it only while logging, so that the
    # process's MLflow default (MLFLOW_TRACKING_URI) is what it was for later calls.
    # MLflow's active run is thread-local: this task's thread owns it briefly.
    with (
        _tracking_uri_while(tracking.uri),
        mlflow.start_run(run_id=tracking.parent_run_id, nested=False),
        warnings.catch_warnings(),
    ):
        # The signature is given; an input example would only run the model once more.
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        info = mlflow.pyfunc.log_model(
            name="audiotag-ensemble",
            python_model=SERVING_MODEL,
            artifacts={"package": str(package)},
            signature=signature(vocab),
            pip_requirements=served_requirements(),
            registered_model_name=MODEL_NAME,
        )
    version = str(info.registered_model_version)
    vh = vocab_hash(vocab)
    client.set_model_version_tag(MODEL_NAME, version, "oof_lwlrap", f"{oof_lwlrap:.6f}")
    client.set_model_version_tag(MODEL_NAME, version, "vocab_hash", vh)
    client.set_model_version_tag(MODEL_NAME, version, "package_digest", digest)
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
    return Registration(version, alias, new=True)


def load_ensemble(uri: str) -> Ensemble:
    """The ensemble of a logged or registered model (``models:/audiotag@champion``, ``runs:/...``).

    Raises:
        FileNotFoundError: MLflow has no such model, version, alias or run.
    """
    _quiet_artifact_bars()
    try:
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as err:
        # An unknown alias is INVALID_PARAMETER_VALUE; a server that fails stays what it is.
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise FileNotFoundError(f"{uri}: {err.message}") from err
    return model.unwrap_python_model().ensemble
