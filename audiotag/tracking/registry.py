"""Logging the ensemble as an MLflow model, registering it (its alias decided fairly by
``champion.decide``), and finding registered models again."""

from __future__ import annotations

import importlib.metadata
import math
import os
import re
import tempfile
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

from audiotag.inference.tagging import PACKAGE_MANIFEST, Ensemble, package_digest
from audiotag.tracking.champion import (
    TRAINED_CLIPS,
    Evidence,
    decide,
    describe_version,
    format_score,
    vocab_hash,
)
from audiotag.tracking.pyfunc import signature
from audiotag.tracking.runs import Tracking

MODEL_NAME = "audiotag"  # the default registered model (TrainConfig.registry.model_name)
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


@dataclass(frozen=True)
class Registration:
    version: str
    alias: str  # 'champion', 'challenger', or '' for an earlier version that has none now
    new: bool  # False: the same package was already registered (a re-run from the cache)
    name: str = MODEL_NAME
    reason: str = ""  # why it got its alias, in words (also the version's decision_reason tag)
    scores: tuple[tuple[str, float], ...] = ()  # what was compared, by tag name


def _registered(client: MlflowClient, name: str, digest: str) -> Registration | None:
    """The version of ``name`` already holding these package files, if any."""
    same = client.search_model_versions(f"name = '{name}' and tags.package_digest = '{digest}'")
    if not same:
        return None
    newest = max(int(v.version) for v in same)
    mv = client.get_model_version(name, str(newest))  # search leaves aliases out
    alias = next((a for a in ("champion", "challenger") if a in mv.aliases), "")
    return Registration(
        str(mv.version), alias, new=False, name=name, reason=mv.tags.get("decision_reason", "")
    )


def register_ensemble(
    tracking: Tracking,
    package: Path,
    vocab: tuple[str, ...],
    oof_lwlrap: float | None,
    evidence: Evidence | None = None,
    name: str = MODEL_NAME,
) -> Registration:
    """Logs the package as a pyfunc model on the parent run and registers it as a
    version of ``name``.

    It becomes ``champion`` only when it beats the current champion of ``name`` fairly:
    on the evidence's labelled held-out clips that neither model trained on (both
    models predict them here); without such clips, on OOF lwlrap when both were taken
    on the same data and folds (``evidence.data_folds``). Otherwise, and always without
    evidence, it stays ``challenger``, the reason recorded. The first version is champion.
    The decision, both scores and the reason are the version's tags; its description
    lists its labels, scores and the Prefect flow run. A package whose files equal
    those of a registered version (every fold from the cache) is not registered
    again: that version is returned.
    """
    _quiet_artifact_bars()
    client = MlflowClient(tracking.uri)
    evidence = evidence or Evidence()
    if oof_lwlrap is not None and math.isnan(oof_lwlrap):
        oof_lwlrap = None
    digest = package_digest(package)
    found = _registered(client, name, digest)
    if found is not None:
        return found
    try:
        champ = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champ = None
    # Decided before this version exists: scoring the champion loads it by version.
    decision = decide(
        client,
        name,
        package,
        vocab,
        oof_lwlrap,
        evidence,
        champ,
        lambda uri: load_ensemble(uri, tracking.uri),
    )
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / Path(TRAINED_CLIPS).name
        listing.write_text("".join(f"{d}\n" for d in sorted(evidence.trained)))
        client.log_artifact(tracking.parent_run_id, str(listing), str(Path(TRAINED_CLIPS).parent))
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
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    alias = "champion" if decision.champion else "challenger"
    tags = {
        "oof_lwlrap": format_score(oof_lwlrap),
        "vocab_hash": vocab_hash(vocab),
        "package_digest": digest,
        "data_folds": evidence.data_folds or "unknown",
        "decision": alias,
        "decision_reason": decision.reason,
        **({"prefect_flow_run_id": evidence.flow_run_id} if evidence.flow_run_id else {}),
        **decision.tags,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(
        name, version, description=describe_version(vocab, oof_lwlrap, evidence, alias, decision)
    )
    client.set_registered_model_alias(name, alias, version)
    scores = tuple((k, float(v)) for k, v in tags.items() if k.endswith("lwlrap") and v != "n/a")
    return Registration(version, alias, new=True, name=name, reason=decision.reason, scores=scores)


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def resolve_model_uri(uri: str, tracking_uri: str) -> str:
    """``models:/NAME@ALIAS`` as the version the alias names now (``models:/NAME/3``), so
    that a long job uses one model even if the alias moves; other URIs as given.

    Raises:
        FileNotFoundError: no such registered model or alias.
    """
    m = _MODELS_URI.match(uri)
    if m is None or m["alias"] is None:
        return uri
    try:
        mv = MlflowClient(tracking_uri).get_model_version_by_alias(m["name"], m["alias"])
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise FileNotFoundError(f"{uri}: {err.message}") from err
    return f"models:/{m['name']}/{mv.version}"


def download_package(uri: str, tracking_uri: str, dst: Path) -> Path:
    """The model package of a logged or registered model, downloaded into ``dst`` once
    (a finished download is reused; a half one is never seen: it is renamed when done).

    Raises:
        FileNotFoundError: MLflow has no such model, or it holds no audiotag package.
    """
    _quiet_artifact_bars()
    if not dst.is_dir():
        dst.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
            try:
                with _tracking_uri_while(tracking_uri):
                    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
            except MlflowException as err:
                if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
                raise FileNotFoundError(f"{uri}: {err.message}") from err
            try:
                Path(tmp).rename(dst)
            except OSError:  # another run finished the same download first
                if not dst.is_dir():
                    raise
            Path(tmp).mkdir()  # for TemporaryDirectory's clean-up
    found = sorted(dst.rglob(PACKAGE_MANIFEST))
    if not found:
        raise FileNotFoundError(f"{uri}: no audiotag model package in this MLflow model")
    return found[0].parent


def load_ensemble(uri: str, tracking_uri: str | None = None) -> Ensemble:
    """The ensemble of a logged or registered model (``models:/audiotag@champion``, ``runs:/...``)
    in the store at ``tracking_uri`` (default: MLflow's, ``MLFLOW_TRACKING_URI``).

    Raises:
        FileNotFoundError: MLflow has no such model, version, alias or run.
    """
    _quiet_artifact_bars()
    try:
        if tracking_uri is None:
            model = mlflow.pyfunc.load_model(uri)
        else:
            with _tracking_uri_while(tracking_uri):
                model = mlflow.pyfunc.load_model(uri)
    except MlflowException as err:
        # An unknown alias is INVALID_PARAMETER_VALUE; a server that fails stays what it is.
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise FileNotFoundError(f"{uri}: {err.message}") from err
    return model.unwrap_python_model().ensemble
