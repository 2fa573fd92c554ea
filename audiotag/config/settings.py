"""The settings: one frozen pydantic model per concern, ``TrainConfig`` over them all.

The same models are the flow's parameters, so the Prefect UI renders them as a
form and refuses bad values before a run starts. A run's training is an ordered
list of stages (``TrainConfig.stages``): each names the subsets it trains on and
the stage it starts from, and everything downstream loops over that list.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The training subsets of the FAT2019 layout a stage can train on.
Subset = Literal["curated", "noisy"]
# The silence threshold: frames this far below a clip's loudest are silence (dB).
SILENCE_TOP_DB = 20.0


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
        SILENCE_TOP_DB, gt=0, description="Frames this far below the clip's loudest are silence."
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
    head_pool: Literal["avg", "mean_max"] = Field(
        "avg",
        description="How the last feature map becomes one vector: fastai's average over "
        "bands and frames, or the mean over bands then the max plus the mean over frames "
        "(PANNs' head: a short sound in a long window is not averaged away).",
    )


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


class SelectionSettings(_Frozen):
    """Which noisy clips a stage adds: those its init stage's out-of-fold predictions
    agree with (the report's "Improvement"; FAT2019's top solutions)."""

    min_lwlrap: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Keep a noisy clip when the lwlrap of its out-of-fold prediction "
        "against its own labels is at least this.",
    )
    max_per_label: int | None = Field(
        None, ge=1, description="At most this many kept clips per label, best-scoring first."
    )
    relabel: bool = Field(
        False,
        description="A clip not kept takes the labels its prediction gives with at least "
        "relabel_min_prob, and is kept with them if there are any.",
    )
    relabel_min_prob: float = Field(
        0.9, gt=0, le=1, description="The probability a relabelled clip's labels need."
    )


# A stage's noisy-label settings (types with their form descriptions, kept out of the class).
NoisySelection = Annotated[
    SelectionSettings | None,
    Field(
        description="Also train on the noisy clips whose out-of-fold predictions by the init "
        "stage's models agree with their labels (every fold's kept clips, with their new "
        "labels); none: only the subsets."
    ),
]
LossName = Annotated[
    Literal["bce", "soft_bootstrap"],
    Field(
        description="BCE with logits, or soft bootstrapping (Reed et al. 2014), robust to "
        "noisy labels: BCE against bootstrap_beta * labels + (1 - beta) * the prediction."
    ),
]
BootstrapBeta = Annotated[
    float, Field(gt=0, le=1, description="The labels' weight in soft bootstrapping (1: BCE).")
]


class StageSettings(_Frozen):
    """One training stage: what it trains on, what it starts from, how it trains.

    Fold k of a stage trains on fold k's training part of each of its subsets and
    scores fold k's held-out part of the first one, so a stage that starts from fold
    k of an earlier stage never sees the clips it is scored on.
    """

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=32,
        description="The stage's name: model folders, MLflow runs and task names use it.",
    )
    subsets: tuple[Subset, ...] = Field(
        min_length=1,
        description="Training subsets; the first one's held-out fold is scored. A stage "
        "whose first subset has no clips is skipped.",
    )
    init: str | None = Field(
        None,
        description="The earlier stage whose fold-k weights fold k starts from (skipped "
        "stages are passed over); none: random weights.",
    )
    cycles: tuple[CycleSettings, ...] = Field(
        min_length=1, description="Flat-then-cosine learning-rate cycles, in order."
    )
    mixup: bool = Field(False, description="Mixup on training batches.")
    batch_size: int = Field(64, gt=0, description="Clips per training batch.")
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
    init_min_gain: float = Field(
        0.05,
        ge=-1,
        le=1,
        description="A fold whose initial weights scored less than this above chance "
        "(random scores' lwlrap) on their own held-out clips learned nothing from them, "
        "so it gets the from-scratch step floor (scratch_min_steps) as well (-1: never).",
    )
    noisy_selection: NoisySelection = None
    loss: LossName = "bce"
    bootstrap_beta: BootstrapBeta = 0.7

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


# The report's two stages (SPEC §2): noisy from scratch, then curated from noisy fold k.
REFERENCE_STAGES = (
    StageSettings(
        name="noisy",
        subsets=("noisy",),
        cycles=(CycleSettings(epochs=10, lr=3e-3), CycleSettings(epochs=10, lr=1e-3, size=256)),
        valid_every=5,
    ),
    StageSettings(
        name="curated",
        subsets=("curated",),
        init="noisy",
        cycles=(CycleSettings(epochs=50, lr=3e-4, size=256),),
        mixup=True,
        valid_every=5,
    ),
)


def _legacy_stages(data: Any) -> Any:
    """Model files written before stages were a list hold ``noisy`` and ``curated``
    sections: they become the reference's two stages, so those files still load."""
    if not isinstance(data, dict) or "stages" in data:
        return data
    legacy = {k: data[k] for k in ("noisy", "curated") if k in data}
    if not legacy:
        return data
    where = {"noisy": {"subsets": ["noisy"]}, "curated": {"subsets": ["curated"], "init": "noisy"}}
    rest = {k: v for k, v in data.items() if k not in legacy}
    rest["stages"] = [{"name": k, **where[k], **v} for k, v in legacy.items()]
    return rest


# A registered model's name: MLflow takes most characters, but the name also appears
# in ``models:/NAME@champion`` URIs and in search filters, where / @ ' and spaces break it.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class RegistrySettings(_Frozen):
    """Where the run's ensemble is registered in MLflow (not part of any model's key)."""

    model_name: str = Field(
        "audiotag",
        pattern=MODEL_NAME_PATTERN,
        description="The registered model the ensemble becomes a version of; one per dataset "
        "or project, so that each keeps its own champion.",
    )


class TrainConfig(_Frozen):
    """Everything that determines a training run's results."""

    preset: str = Field("reference", description="The preset these settings started from.")
    seed: int = Field(0, description="Seed of crops, augmentations and initial weights.")
    mel: MelSettings = MelSettings()
    crop_frames: int = Field(128, gt=0, description="Frames per training crop (2 s at hop 690).")
    model: ModelSettings = ModelSettings()
    augment: AugmentSettings = AugmentSettings()
    folds: FoldSettings = FoldSettings()
    # Whole-clip validation of every held-out clip costs about as much as the training
    # itself on FAT2019 (bench/RESULTS.md, projection), so the reference run scores
    # every 5th epoch (and the last); the report scored one crop per clip per epoch.
    stages: tuple[StageSettings, ...] = Field(
        REFERENCE_STAGES,
        min_length=1,
        description="The training stages in order; the test ensemble uses the last one.",
    )
    eval: EvalSettings = EvalSettings()
    registry: RegistrySettings = RegistrySettings()

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _legacy_stages(data)

    @model_validator(mode="after")
    def _check_stages(self) -> TrainConfig:
        seen: list[str] = []
        for st in self.stages:
            if st.name in seen:
                raise ValueError(f"stage name {st.name!r} is used twice")
            if st.init is not None and st.init not in seen:
                raise ValueError(
                    f"stage {st.name!r} starts from {st.init!r}, which is not an earlier stage"
                    f" (earlier: {seen or 'none'})"
                )
            if st.noisy_selection is not None:
                _check_selection(self, st)
            seen.append(st.name)
        return self

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(st.name for st in self.stages)

    @property
    def last_stage(self) -> StageSettings:
        """The stage whose models make the ensemble and the out-of-fold score."""
        return self.stages[-1]

    def stage(self, name: str) -> StageSettings:
        """The stage called ``name``.

        Raises:
            KeyError: no stage has that name.
        """
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(f"no stage {name!r}; the stages are {list(self.stage_names)}")

    def lineage(self, name: str) -> tuple[StageSettings, ...]:
        """The stage and every stage it starts from, itself first."""
        chain = [self.stage(name)]
        while chain[-1].init is not None:
            chain.append(self.stage(chain[-1].init))
        return tuple(chain)


def _check_selection(config: TrainConfig, st: StageSettings) -> None:
    """A stage that adds selected noisy clips: from models it can trust to be out-of-fold."""
    if st.init is None:
        raise ValueError(
            f"stage {st.name!r} selects noisy clips with its init stage's models, but has no init"
        )
    if "noisy" in st.subsets:
        # Its kept clips come from every noisy fold: fold k's held-out noisy clips would
        # be trained on and scored at once, and the selection would add nothing.
        raise ValueError(
            f"stage {st.name!r} selects noisy clips: its subsets {list(st.subsets)} must "
            "not include 'noisy' itself"
        )
    earlier = [s.name for s in config.lineage(st.init) if s.noisy_selection is not None]
    if earlier:
        # Those stages trained every fold on their kept clips: no model of the lineage
        # would be out-of-fold for them.
        raise ValueError(
            f"stage {st.name!r} selects noisy clips with models that already trained on "
            f"selected noisy clips in every fold (stage {earlier[0]!r})"
        )


def settings_hash(*parts: BaseModel | str | int) -> str:
    """A short stable hash of settings, for cache keys and directory names."""
    h = hashlib.sha256()
    for part in parts:
        text = part.model_dump_json() if isinstance(part, BaseModel) else str(part)
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
