"""Tagging people's own audio with a trained ensemble (a model package)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from audiotag.config import EvalSettings, settings_hash
from audiotag.features.audio import AudioReadError
from audiotag.features.logmel import LogMel, file_logmel
from audiotag.inference.predict import LoadedModel, ensemble
from audiotag.storage import file_digest, write_json_atomic
from audiotag.training.batches import Clips

PACKAGE_MANIFEST = "audiotag-model.json"


def audio_suffixes() -> set[str]:
    """File suffixes soundfile reads here (``.wav``, ``.flac``, ``.ogg``, ...)."""
    suffixes = {f".{ext.lower()}" for ext in sf.available_formats()}
    return suffixes | {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"}


def find_audio(paths: list[Path]) -> list[Path]:
    """Files as given, and what is named like audio under folders (recursive), in a
    stable order.

    Found by name and ``os.stat`` only, never opened: a FIFO, a device or a broken
    link named like audio is listed too, so that tagging gives it an error row
    rather than skipping it unseen.
    """
    suffixes = audio_suffixes()
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if not p.is_dir() and p.suffix.lower() in suffixes
            )
        else:
            found.append(path)
    return found


def write_package(model_files: list[Path], out_dir: Path, ev: EvalSettings) -> Path:
    """Copies fold model files into a model package directory with a manifest.

    The manifest holds the run's evaluation settings (windows, pooling, TTA passes,
    ensemble mean), which tagging uses rather than those stored in each fold file:
    a fold taken from the cache may have been trained by a run with other ones.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, path in enumerate(model_files):
        name = f"fold-{i + 1}.pt"
        shutil.copyfile(path, out_dir / name)
        names.append(name)
    first = LoadedModel(out_dir / names[0])
    write_json_atomic(
        {
            "models": names,
            "ensemble": ev.ensemble,
            "eval": ev.model_dump(mode="json"),
            "vocab": list(first.vocab),
            "format": 1,
        },
        out_dir / PACKAGE_MANIFEST,
    )
    return out_dir


def package_digest(package: Path) -> str:
    """A short hash of a package's files (manifest and fold models): equal packages, equal
    digests, whichever run wrote them."""
    files = sorted(p for p in package.iterdir() if p.is_file())
    return settings_hash(*(f"{p.name}:{file_digest(p)}" for p in files))


def resolve_package(path: Path) -> Path:
    """A package directory, a model file, or a work dir (its newest run's package)."""
    if path.is_file() or (path / PACKAGE_MANIFEST).exists():
        return path
    runs = sorted((path / "runs").glob("*/model")) if (path / "runs").is_dir() else []
    if runs:
        return runs[-1]
    raise FileNotFoundError(f"{path}: no audiotag model package, model file or trained work dir")


class Ensemble:
    """Fold models that share a vocabulary and feature settings."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        path = resolve_package(Path(path))
        self.path = path
        # A lone model file predicts with the settings of the run that trained it.
        self.eval: EvalSettings | None = None
        if path.is_file():
            files, self.how = [path], "mean"
        else:
            manifest = json.loads((path / PACKAGE_MANIFEST).read_text())
            files, self.how = [path / n for n in manifest["models"]], manifest["ensemble"]
            if "eval" in manifest:
                self.eval = EvalSettings.model_validate(manifest["eval"])
        self.models = [LoadedModel(f, device) for f in files]
        first = self.models[0]
        for m in self.models[1:]:
            if m.vocab != first.vocab or m.config.mel != first.config.mel:
                raise ValueError(f"{m.path}: vocabulary or mel settings differ from {first.path}")
        self.vocab, self.mel = first.vocab, first.config.mel
        self._logmel = LogMel(self.mel)

    def features(
        self, path: Path | BinaryIO, name: str | None = None, max_seconds: float | None = None
    ) -> np.ndarray:
        """``(frames, n_mels)`` log-mel of a file's non-silent audio, as in training;
        a file longer than ``max_seconds`` (from its header) is refused undecoded."""
        return file_logmel(path, self.mel, name=name, logmel=self._logmel, max_seconds=max_seconds)

    def predict(self, feats: list[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n_files, n_labels)`` for feature arrays."""
        frames = np.array([len(f) for f in feats], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(frames)[:-1]]).astype(np.int64)
        data = np.concatenate(feats)
        clips = Clips(offsets, frames, np.zeros((len(feats), len(self.vocab)), np.float32))
        return ensemble([m.predict(data, clips, self.eval) for m in self.models], self.how)


@dataclass(frozen=True)
class Tags:
    """One file's tags, or why it has none."""

    path: str
    tags: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def select(
    probs: np.ndarray, vocab: tuple[str, ...], top_k: int | None, threshold: float | None
) -> list[tuple[str, float]]:
    """Labels by falling probability: the top k, or all at or above a threshold."""
    order = np.argsort(-probs, kind="stable")
    if threshold is not None:
        order = [i for i in order if probs[i] >= threshold]
    if top_k is not None:
        order = order[:top_k]
    return [(vocab[i], float(probs[i])) for i in order]


def tag_files(
    ens: Ensemble,
    files: list[Path],
    top_k: int | None = 3,
    threshold: float | None = None,
    chunk: int = 32,
    on_file: Callable[[int], None] | None = None,
) -> Iterator[Tags]:
    """Tags files in order; a file that cannot be read yields an error row, never stops the rest."""
    for lo in range(0, len(files), chunk):
        part = files[lo : lo + chunk]
        feats: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        for i, path in enumerate(part):
            try:
                feats[i] = ens.features(path)
            except AudioReadError as err:
                errors[i] = err.problem
        probs = ens.predict(list(feats.values())) if feats else np.zeros((0, len(ens.vocab)))
        row = dict(zip(feats, probs, strict=True))
        for i, path in enumerate(part):
            if i in errors:
                yield Tags(str(path), error=errors[i])
            else:
                yield Tags(str(path), select(row[i], ens.vocab, top_k, threshold))
            if on_file is not None:
                on_file(1)


def all_probabilities(ens: Ensemble, files: list[Path]) -> dict[str, np.ndarray]:
    """Every label's probability for each readable file (for scoring)."""
    out = {}
    for t in tag_files(ens, files, top_k=None):
        if t.error is None:
            probs = dict(t.tags)
            out[t.path] = np.array([probs[label] for label in ens.vocab])
    return out
