"""Configuration: the settings models, the named presets, the form's options.

``settings`` holds the frozen pydantic models (the flow's parameters), ``presets``
the named presets and dotted-key overrides, ``options`` the UI form's fields,
``tagging`` the settings of tagging and serving.
"""

from audiotag.config.options import TrainOptions
from audiotag.config.presets import PRESETS, PresetName, load_config, parse_override
from audiotag.config.settings import (
    SILENCE_TOP_DB,
    AugmentSettings,
    CycleSettings,
    EvalSettings,
    FoldSettings,
    MelSettings,
    ModelSettings,
    RegistrySettings,
    SelectionSettings,
    StageSettings,
    Subset,
    TrainConfig,
    settings_hash,
)
from audiotag.config.tagging import SegmentSettings, ServeSettings

__all__ = [
    "PRESETS",
    "SILENCE_TOP_DB",
    "AugmentSettings",
    "CycleSettings",
    "EvalSettings",
    "FoldSettings",
    "MelSettings",
    "ModelSettings",
    "RegistrySettings",
    "SegmentSettings",
    "SelectionSettings",
    "ServeSettings",
    "PresetName",
    "StageSettings",
    "Subset",
    "TrainConfig",
    "TrainOptions",
    "load_config",
    "parse_override",
    "settings_hash",
]
