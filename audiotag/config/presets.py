"""The named presets, and building a config from one with dotted-key overrides.

A preset is a partial ``TrainConfig`` as plain data. Its stages are a list; a
preset that changes a stage of another names it (``_stages``), and an override
reaches a stage by its index (``stages.1.batch_size=8``) or by its name
(``curated.batch_size=8``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ValidationError

from audiotag.config.describe import explain_validation_error
from audiotag.config.settings import TrainConfig


def _reference() -> dict[str, Any]:
    """The report's recipe: TrainConfig's defaults (SPEC §2)."""
    return {"preset": "reference"}


def _stages(base: dict[str, Any], changes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``base``'s stages with each named stage's fields updated by ``changes[name]``."""
    stages = TrainConfig.model_validate(base).model_dump(mode="json")["stages"]
    unknown = set(changes) - {st["name"] for st in stages}
    if unknown:
        raise ValueError(f"preset changes unknown stages {sorted(unknown)}")
    return [{**st, **changes.get(st["name"], {})} for st in stages]


def _demo() -> dict[str, Any]:
    # The reference recipe scaled to two CPU cores: 64 mel bands and 32-frame
    # (1 s) crops, a full-width xresnet18 instead of xresnet50, a few epochs per
    # stage, no upscaling (at 64 px a resize costs more than it gives in a few
    # epochs). Full width on half the crop costs about what half width on 2 s
    # crops did and beats the baseline by more (bench/RESULTS.md, quality: drum
    # one-shots OOF margin +0.060 mean of three seeds against +0.032; test lwlrap
    # 0.600 against 0.572 and 0.613 against 0.606 on two sets of instruments,
    # 0.722 against 0.730 on the drum kits). PANNs' mean-max head: test lwlrap
    # +0.016 (drum kits) and +0.012, -0.011 on a third set.
    return {
        "preset": "demo",
        "mel": {"n_fft": 2048, "hop_length": 1380, "n_mels": 64},
        "crop_frames": 32,
        "model": {"arch": "xresnet18", "widen": 1.0, "head_pool": "mean_max"},
        "stages": _stages(
            _reference(),
            {
                "noisy": {
                    "batch_size": 32,
                    "valid_every": 1,
                    "cycles": [{"epochs": 4, "lr": 3e-3}, {"epochs": 2, "lr": 1e-3}],
                    # At least 150 steps from scratch: a user's noisy set of 150 clips gave
                    # 18, and the stage ended at chance (held-out lwlrap 0.30-0.40 on the
                    # drum kits, every fold); 150 took it to 0.63-0.78 (bench/RESULTS.md).
                    "scratch_min_steps": 150,
                },
                "curated": {
                    "batch_size": 16,
                    "valid_every": 1,
                    "cycles": [{"epochs": 10, "lr": 2e-3}],
                    # At least 400 steps, from scratch or not (the demo's 200 training
                    # clips give 120 a pass): on real recordings it was never tuned on,
                    # with a small noisy set whose stage learns little, 120 steps from
                    # those weights under-trained (bench/RESULTS.md, quality: 400 took
                    # test lwlrap 0.570 -> 0.578 and 0.714 -> 0.725, OOF up on both);
                    # from scratch, 400 took drum kits from 0.85 to 0.93 OOF and 800
                    # gave no more.
                    "min_steps": 400,
                    "scratch_min_steps": 400,
                },
            },
        ),
        "eval": {"tta": 2},
    }


def _debug() -> dict[str, Any]:
    # Seconds on a CPU, for tests and smoke runs: the demo recipe with a quarter-width
    # net on 2 s crops, one epoch per stage and no step floors.
    demo = _demo()
    one_epoch = {"cycles": [{"epochs": 1, "lr": 3e-3}], "min_steps": 0, "scratch_min_steps": 0}
    return {
        **demo,
        "preset": "debug",
        "crop_frames": 64,
        "model": {**demo["model"], "widen": 0.25},
        "stages": _stages(demo, {"noisy": one_epoch, "curated": one_epoch}),
        "eval": {"tta": 1},
    }


def _plus_stage(**changes: Any) -> dict[str, Any]:
    """A third stage after ``curated``: fold k goes on from curated fold k with the noisy
    clips the curated models' out-of-fold predictions agree with (the report's
    "Improvement"), scored on curated fold k's held-out clips as before."""
    return {
        "name": "plus",
        "subsets": ["curated"],
        "init": "curated",
        "noisy_selection": {},
        "mixup": True,
        "cycles": [{"epochs": 15, "lr": 1e-4, "size": 256}],
        "valid_every": 5,
        **changes,
    }


def _plus() -> dict[str, Any]:
    """The reference recipe and a short third stage on the selected noisy clips."""
    return {"preset": "plus", "stages": [*_stages(_reference(), {}), _plus_stage()]}


def _demo_plus() -> dict[str, Any]:
    # The third stage scaled as the demo's curated one: small batches, a step floor.
    demo = _demo()
    plus = _plus_stage(
        batch_size=16, valid_every=1, min_steps=60, cycles=[{"epochs": 5, "lr": 1e-3}]
    )
    return {**demo, "preset": "demo_plus", "stages": [*demo["stages"], plus]}


PRESETS: dict[str, dict[str, Any]] = {
    "reference": _reference(),
    "demo": _demo(),
    "debug": _debug(),
    "plus": _plus(),
    "demo_plus": _demo_plus(),
}
# The preset names as a type: the flow's parameter, so the UI offers a choice.
PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


def _stage_index(tree: dict[str, Any], head: str) -> str:
    """A leading stage name -> ``stages.<index>``; other keys are left as they are."""
    if head in TrainConfig.model_fields:
        return head
    names = [st.get("name") for st in tree.get("stages", [])]
    if head in names:
        return f"stages.{names.index(head)}"
    return head


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    parts = [*_stage_index(tree, head).split("."), *(rest.split(".") if rest else [])]
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = node[int(part)] if isinstance(node, list) else node.get(part)
        if nxt is None:
            nxt = {}
            node[part] = nxt
        node = nxt
        if not isinstance(node, dict | list):
            raise ValueError(f"override {key!r}: {'.'.join(parts[: i + 1])} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        if last == "+":  # stages.+={...} appends a stage
            node.append(value)
        else:
            node[int(last)] = value
    else:
        node[last] = value


def load_config(preset: str = "demo", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Builds a preset with dotted-key overrides applied.

    Args:
        preset: a name of ``PRESETS`` (``demo``, ``reference``, ``debug``, ``plus``,
            ``demo_plus``).
        overrides: e.g. ``{"noisy.batch_size": 16, "curated.cycles.0.epochs": 3}``; a
            key starting with a stage's name reaches that stage, as does
            ``stages.<index>``; ``stages.+`` appends a stage.

    Raises:
        ValueError: unknown preset, or an override that does not fit the settings'
            tree; `ConfigError` (a ValueError) for settings that do not validate, one
            line per problem naming the key, the value and what is allowed.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    base = TrainConfig.model_validate(PRESETS[preset]).model_dump(mode="json")
    for key, value in (overrides or {}).items():
        try:
            _set_dotted(base, key, value)
        except (IndexError, KeyError, ValueError) as err:
            raise ValueError(f"override {key}={value!r} does not fit the config: {err}") from err
    try:
        return TrainConfig.model_validate(base)
    except ValidationError as err:
        raise explain_validation_error(err, base) from None


def parse_override(text: str) -> tuple[str, Any]:
    """``'noisy.batch_size=16'`` -> ``('noisy.batch_size', 16)``; values are JSON or strings."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r} is not KEY=VALUE (e.g. {text or 'seed'}=1)")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw
