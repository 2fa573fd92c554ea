"""Logging the ensemble as an MLflow model and deciding its alias."""

from __future__ import annotations

import hashlib
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
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from audiotag.inference.tagging import (
    PACKAGE_MANIFEST,
    Ensemble,
    all_probabilities,
    package_digest,
)
from audiotag.metrics import lwlrap
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


def vocab_hash(vocab: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]


# The parent run's artifact listing the content digests (sha1) of every clip the run's
# models trained on: what tells whether a later run's test clip is held out from them.
TRAINED_CLIPS = "registry/trained-clips.txt"


@dataclass(frozen=True)
class HeldOutClip:
    """A labelled clip the candidate did not train on (the run's test set)."""

    path: str
    labels: tuple[str, ...]
    sha1: str  # its content digest (the metadata's), matched against TRAINED_CLIPS


@dataclass(frozen=True)
class Evidence:
    """What a fair comparison with the champion needs, besides the OOF score.

    ``data_folds`` fingerprints the data and folds the OOF score was taken on (kept
    files, labels, vocabulary, fold assignment, scored subset): two OOF scores are
    compared only when both have one and they are equal. ``held_out``: the run's
    labelled test clips; ``trained``: the content digests of every clip it trained on.
    """

    data_folds: str = ""
    held_out: tuple[HeldOutClip, ...] = ()
    trained: frozenset[str] = frozenset()
    flow_run_id: str = ""
    flow_run_url: str = ""


@dataclass(frozen=True)
class Registration:
    version: str
    alias: str  # 'champion', 'challenger', or '' for an earlier version that has none now
    new: bool  # False: the same package was already registered (a re-run from the cache)
    name: str = MODEL_NAME
    reason: str = ""  # why it got its alias, in words (also the version's decision_reason tag)
    scores: tuple[tuple[str, float], ...] = ()  # what was compared, by tag name


@dataclass(frozen=True)
class _Decision:
    champion: bool
    reason: str
    tags: dict[str, str]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.6f}"


def score_clips(ens: Ensemble, clips: list[HeldOutClip]) -> dict[str, np.ndarray]:
    """Every label's probability for each readable clip, by path."""
    return all_probabilities(ens, [Path(c.path) for c in clips])


def held_out_lwlrap(
    probs: dict[str, np.ndarray], clips: list[HeldOutClip], vocab: tuple[str, ...]
) -> float:
    """lwlrap of ``probs`` on ``clips`` (each has a label in ``vocab`` and a probability)."""
    col = {label: i for i, label in enumerate(vocab)}
    truth = np.zeros((len(clips), len(vocab)), dtype=bool)
    for r, c in enumerate(clips):
        for label in c.labels:
            if label in col:
                truth[r, col[label]] = True
    return lwlrap(truth, np.stack([probs[c.path] for c in clips]))


def _champion_trained(client: MlflowClient, champ: ModelVersion) -> frozenset[str] | None:
    """The clips the champion trained on, or None when its run did not record them."""
    if not champ.run_id:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(champ.run_id, TRAINED_CLIPS, tmp)
        except (MlflowException, OSError):
            return None
        return frozenset(Path(path).read_text().split())


def _decide(
    client: MlflowClient,
    name: str,
    package: Path,
    vocab: tuple[str, ...],
    oof_lwlrap: float | None,
    evidence: Evidence,
    champ: ModelVersion | None,
) -> _Decision:
    """Whether the new package beats ``champ``, on the same clips or the same data only."""
    if champ is None:
        return _Decision(True, f"'{name}' has no champion yet", {})
    tags = {"compared_with_version": str(champ.version)}
    if champ.tags.get("vocab_hash") != vocab_hash(vocab):
        return _Decision(
            False, f"its labels differ from champion version {champ.version}'s: not compared", tags
        )
    trained = _champion_trained(client, champ)
    if trained is not None:
        seen = evidence.trained | trained
        col = set(vocab)
        clips = [c for c in evidence.held_out if c.sha1 not in seen and col.intersection(c.labels)]
        if clips:
            new = score_clips(Ensemble(package), clips)
            champion = load_ensemble(f"models:/{name}/{champ.version}", client.tracking_uri)
            old = score_clips(champion, clips)
            both = [c for c in clips if c.path in new and c.path in old]  # readable by both
            if both:
                mine = held_out_lwlrap(new, both, vocab)
                theirs = held_out_lwlrap(old, both, vocab)
                tags |= {
                    "decision_basis": "held_out",
                    "held_out_clips": str(len(both)),
                    "held_out_lwlrap": _fmt(mine),
                    "champion_held_out_lwlrap": _fmt(theirs),
                }
                verb = "beats" if mine > theirs else "does not beat"
                return _Decision(
                    mine > theirs,
                    f"held-out lwlrap {mine:.4f} {verb} champion version {champ.version}'s "
                    f"{theirs:.4f} on the same {len(both)} labelled clips neither trained on",
                    tags,
                )
    same_data = bool(evidence.data_folds) and champ.tags.get("data_folds") == evidence.data_folds
    theirs = _parse(champ.tags.get("oof_lwlrap"))
    mine = math.nan if oof_lwlrap is None else oof_lwlrap
    if not same_data:
        return _Decision(
            False,
            f"no labelled clips neither it nor champion version {champ.version} trained on, "
            "and their OOF scores were taken on different data or folds: not compared",
            tags | {"decision_basis": "none"},
        )
    tags |= {"decision_basis": "oof", "champion_oof_lwlrap": _fmt(theirs)}
    if math.isnan(mine) or math.isnan(theirs):
        return _Decision(
            False, "same data and folds, but an OOF score is missing: not compared", tags
        )
    verb = "beats" if mine > theirs else "does not beat"
    return _Decision(
        mine > theirs,
        f"OOF lwlrap {mine:.4f} {verb} champion version {champ.version}'s {theirs:.4f} "
        "on the same data and folds (no held-out clips to score both on)",
        tags,
    )


def _parse(tag: str | None) -> float:
    try:
        return float(tag) if tag is not None else math.nan
    except ValueError:  # 'n/a'
        return math.nan


def _description(
    vocab: tuple[str, ...],
    oof_lwlrap: float | None,
    evidence: Evidence,
    alias: str,
    decision: _Decision,
) -> str:
    lines = [f"audiotag ensemble on {len(vocab)} labels: {', '.join(vocab)}"]
    lines.append(f"OOF lwlrap: {_fmt(oof_lwlrap)}")
    t = decision.tags
    if t.get("decision_basis") == "held_out":
        lines.append(
            f"held-out lwlrap on {t['held_out_clips']} clips: {t['held_out_lwlrap']} "
            f"(champion version {t['compared_with_version']}: {t['champion_held_out_lwlrap']})"
        )
    elif t.get("decision_basis") == "oof":
        lines.append(
            f"champion version {t['compared_with_version']}'s OOF lwlrap: "
            f"{t['champion_oof_lwlrap']}"
        )
    lines.append(f"alias: {alias} ({decision.reason})")
    run = evidence.flow_run_id or "none (not run by Prefect)"
    url = f" {evidence.flow_run_url}" if evidence.flow_run_url else ""
    lines.append(f"Prefect flow run: {run}{url}")
    return "\n".join(lines)


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
    decision = _decide(client, name, package, vocab, oof_lwlrap, evidence, champ)
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
        "oof_lwlrap": _fmt(oof_lwlrap),
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
        name, version, description=_description(vocab, oof_lwlrap, evidence, alias, decision)
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
