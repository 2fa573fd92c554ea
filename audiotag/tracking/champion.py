"""Choosing the champion fairly: two models compared only on the same clips or data.

A new version beats the champion only on the new run's labelled held-out clips that
neither model trained on (both predict them here), or, without such clips, on OOF
lwlrap when both were taken on the same data and folds; never on scores taken on
different data.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from audiotag.inference.tagging import Ensemble, all_probabilities
from audiotag.metrics import lwlrap


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
class Decision:
    champion: bool
    reason: str
    tags: dict[str, str]


def format_score(x: float | None) -> str:
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


def decide(
    client: MlflowClient,
    name: str,
    package: Path,
    vocab: tuple[str, ...],
    oof_lwlrap: float | None,
    evidence: Evidence,
    champ: ModelVersion | None,
    load_version: Callable[[str], Ensemble],
) -> Decision:
    """Whether the new package beats ``champ``, on the same clips or the same data only.

    ``load_version(uri)`` loads a registered version's ensemble (the champion's, to
    score it on the new run's held-out clips).
    """
    if champ is None:
        return Decision(True, f"'{name}' has no champion yet", {})
    tags = {"compared_with_version": str(champ.version)}
    if champ.tags.get("vocab_hash") != vocab_hash(vocab):
        return Decision(
            False, f"its labels differ from champion version {champ.version}'s: not compared", tags
        )
    trained = _champion_trained(client, champ)
    if trained is not None:
        seen = evidence.trained | trained
        col = set(vocab)
        clips = [c for c in evidence.held_out if c.sha1 not in seen and col.intersection(c.labels)]
        if clips:
            new = score_clips(Ensemble(package), clips)
            champion = load_version(f"models:/{name}/{champ.version}")
            old = score_clips(champion, clips)
            both = [c for c in clips if c.path in new and c.path in old]  # readable by both
            if both:
                mine = held_out_lwlrap(new, both, vocab)
                theirs = held_out_lwlrap(old, both, vocab)
                tags |= {
                    "decision_basis": "held_out",
                    "held_out_clips": str(len(both)),
                    "held_out_lwlrap": format_score(mine),
                    "champion_held_out_lwlrap": format_score(theirs),
                }
                verb = "beats" if mine > theirs else "does not beat"
                return Decision(
                    mine > theirs,
                    f"held-out lwlrap {mine:.4f} {verb} champion version {champ.version}'s "
                    f"{theirs:.4f} on the same {len(both)} labelled clips neither trained on",
                    tags,
                )
    same_data = bool(evidence.data_folds) and champ.tags.get("data_folds") == evidence.data_folds
    theirs = _parse(champ.tags.get("oof_lwlrap"))
    mine = math.nan if oof_lwlrap is None else oof_lwlrap
    if not same_data:
        return Decision(
            False,
            f"no labelled clips neither it nor champion version {champ.version} trained on, "
            "and their OOF scores were taken on different data or folds: not compared",
            tags | {"decision_basis": "none"},
        )
    tags |= {"decision_basis": "oof", "champion_oof_lwlrap": format_score(theirs)}
    if math.isnan(mine) or math.isnan(theirs):
        return Decision(
            False, "same data and folds, but an OOF score is missing: not compared", tags
        )
    verb = "beats" if mine > theirs else "does not beat"
    return Decision(
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


def describe_version(
    vocab: tuple[str, ...],
    oof_lwlrap: float | None,
    evidence: Evidence,
    alias: str,
    decision: Decision,
) -> str:
    lines = [f"audiotag ensemble on {len(vocab)} labels: {', '.join(vocab)}"]
    lines.append(f"OOF lwlrap: {format_score(oof_lwlrap)}")
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
