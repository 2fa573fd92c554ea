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

from audiotag.config import EvalSettings, SegmentSettings, settings_hash
from audiotag.features.audio import AudioReadError
from audiotag.features.files import CutLogMel, cut_logmel, file_logmel
from audiotag.features.logmel import LogMel
from audiotag.inference.predict import LoadedModel, ensemble, pool_windows
from audiotag.inference.segments import Segment, find_segments
from audiotag.inference.thresholds import DEFAULT_THRESHOLD, Thresholds
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


def write_package(
    model_files: list[Path], out_dir: Path, ev: EvalSettings, thresholds: Thresholds | None = None
) -> Path:
    """Copies fold model files into a model package directory with a manifest.

    The manifest holds the run's evaluation settings (windows, pooling, TTA passes,
    ensemble mean), which tagging uses rather than those stored in each fold file:
    a fold taken from the cache may have been trained by a run with other ones; and
    the per-label thresholds calibrated on the run's out-of-fold predictions, when given.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, path in enumerate(model_files):
        name = f"fold-{i + 1}.pt"
        shutil.copyfile(path, out_dir / name)
        names.append(name)
    first = LoadedModel(out_dir / names[0])
    manifest = {
        "models": names,
        "ensemble": ev.ensemble,
        "eval": ev.model_dump(mode="json"),
        "vocab": list(first.vocab),
        "format": 1,
    }
    if thresholds is not None:
        if set(thresholds.by_label) != set(first.vocab):
            raise ValueError(f"{out_dir}: thresholds are not for the models' labels")
        manifest["thresholds"] = thresholds.to_json()
    write_json_atomic(manifest, out_dir / PACKAGE_MANIFEST)
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
        # Per-label thresholds; None: a lone model file or a package from before them.
        self.thresholds: Thresholds | None = None
        if path.is_file():
            files, self.how = [path], "mean"
        else:
            manifest = json.loads((path / PACKAGE_MANIFEST).read_text())
            files, self.how = [path / n for n in manifest["models"]], manifest["ensemble"]
            if "eval" in manifest:
                self.eval = EvalSettings.model_validate(manifest["eval"])
            if "thresholds" in manifest:
                self.thresholds = Thresholds.from_json(manifest["thresholds"])
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

    def cut_features(
        self, path: Path | BinaryIO, name: str | None = None, max_seconds: float | None = None
    ) -> CutLogMel:
        """`features` with the silences cut and the file's rate, to place windows in time."""
        return cut_logmel(path, self.mel, name=name, logmel=self._logmel, max_seconds=max_seconds)

    def threshold_array(self, threshold: float | None = None) -> np.ndarray:
        """``(n_labels,)``: ``threshold`` for every label when given, else the package's
        calibrated ones, else `DEFAULT_THRESHOLD`."""
        if threshold is None and self.thresholds is not None:
            return self.thresholds.array(self.vocab)
        value = DEFAULT_THRESHOLD if threshold is None else threshold
        return np.full(len(self.vocab), value, dtype=np.float64)

    def predict(self, feats: list[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n_files, n_labels)`` for feature arrays."""
        return self.predict_windows(feats)[0]

    def predict_windows(
        self, feats: list[np.ndarray]
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Clip probabilities ``(n_files, n_labels)``, and per file its windows' first
        frames ``(W,)`` and probabilities ``(W, n_labels)`` (each model's passes averaged,
        then the models ensembled as the clips are)."""
        data, clips = _as_clips(feats, len(self.vocab))
        clip_probs, window_probs = [], []
        for m in self.models:
            owner, starts, passes = m.predict_windows(data, clips, self.eval)
            ev = self.eval or m.config.eval
            pooled = [pool_windows(w, owner, len(clips), ev.pooling) for w in passes]
            clip_probs.append(np.mean(pooled, axis=0))
            window_probs.append(np.mean(passes, axis=0))
        probs = ensemble(clip_probs, self.how)
        windows = ensemble(window_probs, self.how)
        per_file = [(starts[owner == i], windows[owner == i]) for i in range(len(feats))]
        return probs, per_file

    @property
    def window_frames(self) -> int:
        """The models' window width in frames."""
        return self.models[0].config.crop_frames


def _as_clips(feats: list[np.ndarray], n_labels: int) -> tuple[np.ndarray, Clips]:
    """Feature arrays as one store and its clips; a lone array is not copied."""
    frames = np.array([len(f) for f in feats], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(frames)[:-1]]).astype(np.int64)
    data = feats[0] if len(feats) == 1 else np.concatenate(feats)
    return data, Clips(offsets, frames, np.zeros((len(feats), n_labels), np.float32))


@dataclass(frozen=True)
class Tags:
    """One file's tags, or why it has none.

    ``tags``: the labels chosen, by falling probability; ``best``: the most probable
    label whether chosen or not (so that a file with no label above its threshold still
    says what it most resembles); ``segments``: None unless asked for.
    """

    path: str
    tags: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    best: tuple[str, float] | None = None
    segments: list[Segment] | None = None


def _probability(p: float) -> float | None:
    """A probability for JSON: rounded, and None rather than a bare NaN."""
    return round(float(p), 6) if np.isfinite(p) else None


def tag_record(t: Tags) -> dict:
    """The one output format of a file's tags (CLI JSON/JSONL, the served model, the flow):
    ``path`` (as given), ``tags`` (a list of ``{label, probability}``), ``best`` (one such,
    or None in an error row), ``segments`` (a list of ``{start, end, label, probability}``,
    only when asked for) and ``error`` (None when the file was tagged). Strict JSON."""
    rec: dict = {
        "path": t.path,
        "tags": [{"label": label, "probability": _probability(p)} for label, p in t.tags],
        "best": None
        if t.best is None
        else {"label": t.best[0], "probability": _probability(t.best[1])},
    }
    if t.segments is not None:
        rec["segments"] = [
            {
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "label": s.label,
                "probability": _probability(s.probability),
            }
            for s in t.segments
        ]
    rec["error"] = t.error
    return rec


def select(
    probs: np.ndarray,
    vocab: tuple[str, ...],
    top_k: int | None,
    threshold: float | np.ndarray | None,
) -> list[tuple[str, float]]:
    """Labels by falling probability: the top k, or all at or above a threshold (one for
    every label, or ``(n_labels,)``: each label's own)."""
    order = np.argsort(-probs, kind="stable")
    if threshold is not None:
        cut = np.broadcast_to(np.asarray(threshold, dtype=np.float64), probs.shape)
        order = [i for i in order if probs[i] >= cut[i]]
    if top_k is not None:
        order = order[:top_k]
    return [(vocab[i], float(probs[i])) for i in order]


def file_tags(
    path: str,
    probs: np.ndarray,
    windows: tuple[np.ndarray, np.ndarray],
    cut: CutLogMel,
    ens: Ensemble,
    top_k: int | None,
    threshold: float | np.ndarray | None,
    segment_at: np.ndarray,
    segments: SegmentSettings | None,
) -> Tags:
    """One tagged file's row: its labels (`select`), its best label, and its segments at
    ``segment_at`` when ``segments`` are asked for."""
    best = int(np.argmax(probs))
    return Tags(
        path,
        select(probs, ens.vocab, top_k, threshold),
        best=(ens.vocab[best], float(probs[best])),
        segments=None
        if segments is None
        else find_segments(
            windows[0], windows[1], cut, ens.window_frames, ens.mel, ens.vocab, segment_at, segments
        ),
    )


# Log-mel frames held before a chunk of files is predicted: about 34 minutes of audio at
# the demo settings, 5 at the reference ones (16 MB of float32 at 64 bands). A longer
# file is predicted alone, so that memory follows the longest file, never the folder.
CHUNK_FRAMES = 1 << 16


def tag_files(
    ens: Ensemble,
    files: list[Path],
    top_k: int | None = 3,
    threshold: float | None = None,
    chunk: int = 32,
    on_file: Callable[[int], None] | None = None,
    *,
    per_class: bool = False,
    segments: SegmentSettings | None = None,
    chunk_frames: int = CHUNK_FRAMES,
) -> Iterator[Tags]:
    """Tags files in order; a file that cannot be read yields an error row, never stops the rest.

    Args:
        top_k: at most this many labels per file (None: no limit).
        threshold: only labels at or above this probability.
        chunk: files predicted together, at most.
        on_file: called with 1 after each file.
        per_class: only labels at or above their own calibrated threshold (the package's;
            `DEFAULT_THRESHOLD` for a package without), instead of ``threshold``.
        segments: also each file's time segments (`find_segments`), at ``threshold``
            when given, else at the package's per-label thresholds.
        chunk_frames: log-mel frames held, at most, before the files read are predicted.
    """
    cut_at = ens.threshold_array() if per_class else threshold
    segment_at = ens.threshold_array(threshold)
    pending: list[tuple[Path, CutLogMel | str]] = []
    held = 0

    def flush() -> Iterator[Tags]:
        ok = [c for _, c in pending if not isinstance(c, str)]
        probs, windows = ens.predict_windows([c.logmel for c in ok]) if ok else (None, [])
        k = 0
        for path, c in pending:
            if isinstance(c, str):
                yield Tags(str(path), error=c)
            else:
                yield file_tags(
                    str(path), probs[k], windows[k], c, ens, top_k, cut_at, segment_at, segments
                )
                k += 1
            if on_file is not None:
                on_file(1)

    for path in files:
        try:
            features: CutLogMel | str = ens.cut_features(path)
        except AudioReadError as err:
            features = err.problem
        frames = 0 if isinstance(features, str) else len(features.logmel)
        if pending and held + frames > chunk_frames:
            yield from flush()
            pending, held = [], 0
        pending.append((path, features))
        held += frames
        if len(pending) >= chunk or held >= chunk_frames:
            yield from flush()
            pending, held = [], 0
    if pending:
        yield from flush()


def all_probabilities(ens: Ensemble, files: list[Path]) -> dict[str, np.ndarray]:
    """Every label's probability for each readable file (for scoring)."""
    out = {}
    for t in tag_files(ens, files, top_k=None):
        if t.error is None:
            probs = dict(t.tags)
            out[t.path] = np.array([probs[label] for label in ens.vocab])
    return out
