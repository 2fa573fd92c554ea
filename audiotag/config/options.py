"""The form's options: the settings a person changes most, as flow parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from audiotag.config.presets import PRESETS, load_config
from audiotag.config.settings import MODEL_NAME_PATTERN, CycleSettings, TrainConfig, _Frozen


def _in_presets(what: Callable[[TrainConfig], Any]) -> str:
    """The form's words for an empty field: each preset's value of it."""
    values = []
    for name in PRESETS:
        try:
            value = what(load_config(name))
        except (KeyError, ValueError):  # a preset without that stage
            value = "none"
        values.append(f"{name} {value}")
    return " Empty: the preset's value (" + ", ".join(values) + ")."


def plain_optionals(schema: dict[str, Any], *_: Any) -> None:
    """Each ``X | None`` property of a model's JSON schema as plain ``X``, no null default.

    The Prefect UI draws ``anyOf [X, null]`` as a type toggle ("int | None") and
    prefills ``null``; a plain ``X`` that is not required is a plain field whose empty
    value is left out, which the model reads as None (the preset's value).
    """
    for prop in schema.get("properties", {}).values():
        kept = [b for b in prop.get("anyOf", ()) if b != {"type": "null"}]
        if len(kept) == 1 and len(prop["anyOf"]) == 2:
            del prop["anyOf"]
            prop.update(kept[0])
            if prop.get("default", 0) is None:
                del prop["default"]


def _batch_sizes(config: TrainConfig) -> str:
    return "/".join(str(s.batch_size) for s in config.stages)


class TrainOptions(_Frozen):
    """The settings a person changes most, as a form: a number, or empty for the
    preset's value (each field's help names every preset's).

    Any other preset field is reachable through the flow's ``overrides``
    (docs/config.md lists the keys).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=plain_optionals)

    seed: int | None = Field(
        None,
        title="Seed",
        ge=0,
        description="Seed of crops, augmentations and weights." + _in_presets(lambda c: c.seed),
    )
    n_folds: int | None = Field(
        None,
        title="Folds",
        ge=2,
        le=20,
        description="Cross-validation folds." + _in_presets(lambda c: c.folds.n_folds),
    )
    noisy_epochs: int | None = Field(
        None,
        title="Noisy epochs",
        ge=1,
        le=1000,
        description="Epochs of the noisy stage, shared between its cycles as the preset does."
        + _in_presets(lambda c: c.stage("noisy").epochs),
    )
    curated_epochs: int | None = Field(
        None,
        title="Curated epochs",
        ge=1,
        le=1000,
        description="Epochs of the curated stage, shared between its cycles as the preset "
        "does." + _in_presets(lambda c: c.stage("curated").epochs),
    )
    batch_size: int | None = Field(
        None,
        title="Batch size",
        ge=1,
        le=4096,
        description="Training batch size of every stage." + _in_presets(_batch_sizes),
    )
    tta: int | None = Field(
        None,
        title="TTA passes",
        ge=0,
        le=64,
        description="Augmented passes at test time." + _in_presets(lambda c: c.eval.tta),
    )

    model_name: str | None = Field(
        None,
        title="Registered model",
        pattern=MODEL_NAME_PATTERN,
        description="The MLflow registered model this run's ensemble becomes a version of "
        "(one per dataset or project: each keeps its own champion); empty: 'audiotag'.",
    )

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields given, so the form's default is ``{}``, valid for its schema."""
        return {k: v for k, v in handler(self).items() if v is not None}

    def overrides(self, base: TrainConfig) -> dict[str, Any]:
        """These options as dotted overrides of ``base`` (the preset they apply to)."""
        out: dict[str, Any] = {}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.n_folds is not None:
            out["folds.n_folds"] = self.n_folds
        for name, epochs in (("noisy", self.noisy_epochs), ("curated", self.curated_epochs)):
            if epochs is not None and name in base.stage_names:
                out[f"{name}.cycles"] = _spread_epochs(base.stage(name).cycles, epochs)
        if self.batch_size is not None:
            for i in range(len(base.stages)):
                out[f"stages.{i}.batch_size"] = self.batch_size
        if self.tta is not None:
            out["eval.tta"] = self.tta
        if self.model_name is not None:
            out["registry.model_name"] = self.model_name
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
