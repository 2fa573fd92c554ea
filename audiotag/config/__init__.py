"""Configuration: one frozen pydantic model per concern, and the named presets.

The same models are the flow's parameters, so the Prefect UI renders them as a
form and refuses bad values before a run starts. Every preset field can be
overridden with dotted keys (``noisy.cycles.0.epochs=3``).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Stage = Literal["noisy", "curated"]
STAGES: tuple[Stage, ...] = ("noisy", "curated")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MelSettings(_Frozen):
    """Log-mel spectrogram settings (SPEC §2, 'mel')."""

    sample_rate: int = Field(44100, gt=0, description="Audio is resampled to this rate (Hz).")
    n_fft: int = Field(2560, gt=0, description="FFT size.")
    win_length: int = Field(1024, gt=0, description="Hann window length (samples).")
    hop_length: int = Field(690, gt=0, description="Hop between frames (samples).")
    n_mels: int = Field(128, gt=0, description="Mel bands: the spectrogram's height.")
    f_min: float = Field(20.0, ge=0, description="Lowest mel frequency (Hz).")
    f_max: float = Field(20000.0, gt=0, description="Highest mel frequency (Hz).")
    top_db: float = Field(60.0, gt=0, description="Dynamic range kept per crop (dB).")
    silence_top_db: float = Field(
        20.0, gt=0, description="Frames this far below the clip's loudest are silence."
    )

    @model_validator(mode="after")
    def _check(self) -> MelSettings:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        if self.f_max > self.sample_rate / 2:
            raise ValueError(f"f_max {self.f_max} is above Nyquist ({self.sample_rate / 2})")
        if self.f_min >= self.f_max:
            raise ValueError(f"f_min {self.f_min} must be below f_max {self.f_max}")
        return self


class ModelSettings(_Frozen):
    """The network: fastai's xresnet with the report's tweaks."""

    arch: Literal["xresnet18", "xresnet34", "xresnet50"] = Field(
        "xresnet50", description="fastai xresnet depth."
    )
    widen: float = Field(1.0, gt=0, le=4, description="Channel width multiplier (1 = fastai's).")
    self_attention: bool = Field(True, description="Self-attention layer (sa=True).")
    act: Literal["mish", "relu"] = Field("mish", description="Activation function.")
    blur_pool: bool = Field(True, description="Replace MaxPool2d with MaxBlurPool.")


class AugmentSettings(_Frozen):
    """Training-only augmentations (SpecAugment per item, lighting per batch)."""

    time_masks: int = Field(1, ge=0, description="SpecAugment time masks per item.")
    freq_masks: int = Field(1, ge=0, description="SpecAugment frequency masks per item.")
    mask_width: int = Field(8, ge=1, description="Largest mask width (frames or bands).")
    brightness: float = Field(0.2, ge=0, lt=1, description="Largest brightness change.")
    contrast: float = Field(0.2, ge=0, lt=1, description="Largest contrast change.")
    lighting_p: float = Field(0.75, ge=0, le=1, description="Probability of each change.")
    mixup_alpha: float = Field(0.4, gt=0, description="Beta(alpha, alpha) for Mixup.")


class CycleSettings(_Frozen):
    """One flat-then-cosine cycle."""

    epochs: int = Field(gt=0, description="Epochs in this cycle.")
    lr: float = Field(gt=0, description="Flat learning rate before the cosine decay.")
    size: int | None = Field(
        None, gt=0, description="Resize training crops to size x size (bilinear); None keeps them."
    )


class StageSettings(_Frozen):
    """One training stage (noisy or curated)."""

    cycles: tuple[CycleSettings, ...] = Field(min_length=1)
    mixup: bool = Field(False, description="Mixup on training batches.")
    batch_size: int = Field(64, gt=0)
    pct_start: float = Field(0.75, gt=0, le=1, description="Share of a cycle at flat lr.")
    min_steps: int = Field(
        0,
        ge=0,
        description="On small data, each epoch draws more batches (every clip several "
        "times, each time a new random crop) so that the stage takes at least this many "
        "optimiser steps (0: one pass over the clips per epoch).",
    )
    valid_every: int = Field(
        1,
        ge=1,
        description="Score the held-out clips (whole clips, every window) after every "
        "n-th epoch and after the last; the epochs between log no validation figures.",
    )
    scratch_min_steps: int = Field(
        0,
        ge=0,
        description="As min_steps, for a stage that starts from random weights (no earlier "
        "stage to start from, e.g. a curated stage on a dataset without noisy clips), "
        "which needs more steps to learn.",
    )

    @property
    def epochs(self) -> int:
        return sum(c.epochs for c in self.cycles)

    def batches_per_epoch(self, n_clips: int, from_scratch: bool) -> int:
        """Training batches per epoch for ``n_clips`` clips.

        One pass over the clips (the last partial batch dropped, as fastai does), or
        more on small data, so that the stage takes at least ``min_steps`` steps
        (``scratch_min_steps`` from random weights). The epochs stay as given:
        validation and checkpoints keep their count.
        """
        if n_clips <= 0:
            raise ValueError(f"no training clips (n_clips={n_clips})")
        one_pass = max(1, n_clips // self.batch_size)
        floor = max(self.min_steps, self.scratch_min_steps if from_scratch else 0)
        return max(one_pass, math.ceil(floor / self.epochs))


class FoldSettings(_Frozen):
    n_folds: int = Field(5, ge=2, description="Cross-validation folds per training subset.")
    seed: int = Field(42, description="random_state of the split.")
    method: Literal["kfold", "stratified"] = Field(
        "kfold", description="KFold as the report, or multilabel-stratified."
    )


class EvalSettings(_Frozen):
    """How validation and test clips are scored."""

    window_overlap: float = Field(
        0.5, ge=0, lt=1, description="Overlap of the windows that cover each clip."
    )
    pooling: Literal["mean", "max", "gmean"] = Field(
        "mean", description="How window predictions become a clip prediction."
    )
    tta: int = Field(0, ge=0, description="Augmented passes added to the clean pass at test time.")
    ensemble: Literal["mean", "gmean"] = Field(
        "mean", description="How fold models' probabilities are averaged."
    )


class TrainConfig(_Frozen):
    """Everything that determines a training run's results."""

    preset: Literal["demo", "reference"] = "reference"
    seed: int = Field(0, description="Seed of crops, augmentations and initial weights.")
    mel: MelSettings = MelSettings()
    crop_frames: int = Field(128, gt=0, description="Frames per training crop (2 s at hop 690).")
    model: ModelSettings = ModelSettings()
    augment: AugmentSettings = AugmentSettings()
    folds: FoldSettings = FoldSettings()
    # Whole-clip validation of every held-out clip costs about as much as the training
    # itself on FAT2019 (bench/RESULTS.md, projection), so the reference run scores
    # every 5th epoch (and the last); the report scored one crop per clip per epoch.
    noisy: StageSettings = StageSettings(
        cycles=(CycleSettings(epochs=10, lr=3e-3), CycleSettings(epochs=10, lr=1e-3, size=256)),
        valid_every=5,
    )
    curated: StageSettings = StageSettings(
        cycles=(CycleSettings(epochs=50, lr=3e-4, size=256),), mixup=True, valid_every=5
    )
    eval: EvalSettings = EvalSettings()

    def stage(self, name: Stage) -> StageSettings:
        return self.noisy if name == "noisy" else self.curated


def _demo() -> dict[str, Any]:
    # The reference recipe scaled to two CPU cores: 64 mel bands and 64-frame
    # (2 s) crops, a half-width xresnet18 instead of xresnet50 (2.2x the images/s
    # of the full-width one here), a few epochs per stage, no upscaling (at 64 px
    # a resize costs more than it gives in a few epochs).
    return {
        "preset": "demo",
        "mel": {"n_fft": 2048, "hop_length": 1380, "n_mels": 64},
        "crop_frames": 64,
        "model": {"arch": "xresnet18", "widen": 0.5},
        "noisy": {
            "batch_size": 32,
            "cycles": [{"epochs": 4, "lr": 3e-3}, {"epochs": 2, "lr": 1e-3}],
        },
        "curated": {
            "batch_size": 16,
            "mixup": True,
            "cycles": [{"epochs": 10, "lr": 2e-3}],
            # The demo's 200 training clips give 120 steps; a smaller dataset (a
            # user's own) still gets as many. Without noisy clips to start from, the
            # stage learns from scratch and gets at least 400: on real recordings it
            # was never tuned on (hydrogen drum kits: 366 clips, 10 classes) that took
            # OOF lwlrap from 0.85 to 0.93 and held-out kits from 0.77 to 0.84;
            # 800 steps gave no more.
            "min_steps": 120,
            "scratch_min_steps": 400,
        },
        "eval": {"tta": 2},
    }


PRESETS: dict[str, dict[str, Any]] = {"reference": {"preset": "reference"}, "demo": _demo()}


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = node[int(part)] if isinstance(node, list) else node.get(part)
        if nxt is None:
            nxt = {}
            node[part] = nxt
        elif isinstance(nxt, tuple):
            nxt = list(nxt)
            if isinstance(node, list):
                node[int(part)] = nxt
            else:
                node[part] = nxt
        node = nxt
        if not isinstance(node, dict | list):
            raise ValueError(f"override {key!r}: {'.'.join(parts[: i + 1])} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def load_config(preset: str = "demo", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Builds a preset with dotted-key overrides applied.

    Args:
        preset: ``demo`` or ``reference``.
        overrides: e.g. ``{"noisy.batch_size": 16, "curated.cycles.0.epochs": 3}``.

    Raises:
        ValueError: unknown preset, or an override that does not validate.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    base = TrainConfig.model_validate(PRESETS[preset]).model_dump(mode="json")
    for key, value in (overrides or {}).items():
        try:
            _set_dotted(base, key, value)
        except (IndexError, KeyError, ValueError) as err:
            raise ValueError(f"override {key}={value!r} does not fit the config: {err}") from err
    return TrainConfig.model_validate(base)


def parse_override(text: str) -> tuple[str, Any]:
    """``'noisy.batch_size=16'`` -> ``('noisy.batch_size', 16)``; values are JSON or strings."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r} is not KEY=VALUE")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def settings_hash(*parts: BaseModel | str | int) -> str:
    """A short stable hash of settings, for cache keys and directory names."""
    h = hashlib.sha256()
    for part in parts:
        text = part.model_dump_json() if isinstance(part, BaseModel) else str(part)
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class TrainOptions(_Frozen):
    """The settings a person changes most, as a form; empty fields keep the preset's value.

    Any other preset field is reachable through the flow's ``overrides``.
    """

    seed: int | None = Field(
        None, title="Seed", ge=0, description="Seed of crops, augmentations and weights."
    )
    n_folds: int | None = Field(
        None, title="Folds", ge=2, le=20, description="Cross-validation folds."
    )
    noisy_epochs: int | None = Field(
        None,
        title="Noisy epochs",
        ge=1,
        le=1000,
        description="Epochs of the noisy stage, shared between its cycles as the preset does.",
    )
    curated_epochs: int | None = Field(
        None,
        title="Curated epochs",
        ge=1,
        le=1000,
        description="Epochs of the curated stage, shared between its cycles as the preset does.",
    )
    batch_size: int | None = Field(
        None, title="Batch size", ge=1, le=4096, description="Training batch size of both stages."
    )
    tta: int | None = Field(
        None, title="TTA passes", ge=0, le=64, description="Augmented passes at test time."
    )

    def overrides(self, base: TrainConfig) -> dict[str, Any]:
        """These options as dotted overrides of ``base`` (the preset they apply to)."""
        out: dict[str, Any] = {}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.n_folds is not None:
            out["folds.n_folds"] = self.n_folds
        for name, epochs in (("noisy", self.noisy_epochs), ("curated", self.curated_epochs)):
            if epochs is not None:
                out[f"{name}.cycles"] = _spread_epochs(base.stage(name).cycles, epochs)
        if self.batch_size is not None:
            out["noisy.batch_size"] = out["curated.batch_size"] = self.batch_size
        if self.tta is not None:
            out["eval.tta"] = self.tta
        return out


def _spread_epochs(cycles: tuple[CycleSettings, ...], total: int) -> list[dict[str, Any]]:
    """``total`` epochs over ``cycles`` in the preset's proportions, each cycle at least one.

    With fewer epochs than cycles, the last cycles are dropped (the first one is the
    warm-up at the stage's main learning rate).
    """
    cycles = cycles[:total]
    weights = [c.epochs for c in cycles]
    share = [max(1, total * w // sum(weights)) for w in weights]
    share[0] += total - sum(share)  # what rounding leaves goes to the first cycle
    if share[0] < 1:
        raise ValueError(f"cannot spread {total} epochs over {len(cycles)} cycles")
    return [
        c.model_copy(update={"epochs": n}).model_dump(mode="json")
        for c, n in zip(cycles, share, strict=True)
    ]
