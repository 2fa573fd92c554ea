"""The settings in words: every field of a config with its dotted key, value and
description (``audiotag config show``), and a validation error as one line per problem
naming the key, the value given and what the field allows."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

# A stage name that can lead a key (StageSettings.name's pattern).
STAGE_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class FieldRow:
    """One setting: ``--set KEY=VALUE`` changes it."""

    key: str  # dotted, a stage by its name: 'curated.cycles.0.epochs'
    value: str  # as JSON, as --set takes it
    description: str


def describe_fields(config: BaseModel) -> list[FieldRow]:
    """Every leaf field of ``config``, in the models' order; a stage's key starts with
    its name, a list's items with their index."""
    return list(_rows(config, ""))


def _rows(model: BaseModel, prefix: str) -> Any:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            yield from _rows(value, f"{key}.")
        elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            for i, item in enumerate(value):
                # A stage is reached by its name (the same as stages.<i>).
                head = item.name if name == "stages" else f"{key}.{i}"
                yield from _rows(item, f"{head}.")
        else:
            dumped = json.dumps(value if not isinstance(value, tuple) else list(value))
            words = " ".join((info.description or "").split())
            allowed = _allowed(info)
            yield FieldRow(key, dumped, f"{words} [{allowed}]" if allowed else words)


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _allowed(info: FieldInfo) -> str:
    """What a field takes, in a few symbols: its bounds ('> 0, <= 4') or its choices."""
    parts = []
    for item in info.metadata:
        for attr, sign in _BOUNDS.items():
            bound = getattr(item, attr, None)
            if bound is not None:
                parts.append(f"{sign} {bound}")
    choices = _choices(info.annotation)
    if choices:
        parts.append(" | ".join(json.dumps(c) for c in choices))
    return ", ".join(parts)


def _choices(annotation: Any) -> tuple[Any, ...]:
    """A Literal's values, also inside ``X | None`` or ``tuple[X, ...]``."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    for arg in get_args(annotation):
        if found := _choices(arg):
            return found
    return ()


class ConfigError(ValueError):
    """Settings that do not validate: ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _key(loc: tuple[int | str, ...], stage_names: list[str]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "stages" and parts[1].isdigit():
        i = int(parts[1])
        if i < len(stage_names) and STAGE_NAME.fullmatch(str(stage_names[i])):
            parts = [stage_names[i], *parts[2:]]
    return ".".join(parts)


def explain_validation_error(err: ValidationError, tree: dict[str, Any]) -> ConfigError:
    """One line per problem of ``err`` (raised validating ``tree``): the dotted key, the
    value given and what the field allows, in pydantic's words without its links.

    A section or list whose own item failed is not reported again (pydantic adds, say,
    "at least 1 item" to a list whose only item it refused).
    """
    names = [st.get("name", "") for st in tree.get("stages", []) if isinstance(st, dict)]
    errors = err.errors(include_url=False)
    deepest = [
        e
        for e in errors
        if not any(
            len(o["loc"]) > len(e["loc"]) and o["loc"][: len(e["loc"])] == e["loc"] for o in errors
        )
    ]
    lines = []
    for e in deepest:
        key = _key(e["loc"], names)
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Input ")
        msg = msg[:1].lower() + msg[1:]
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: no such setting (`audiotag config show` lists them)")
        elif e["type"] == "missing":
            lines.append(f"{key}: missing (required)")
        elif isinstance(e.get("input"), dict | list) or not key:
            lines.append(f"{key or 'settings'}: {msg}")
        else:
            lines.append(f"{key}={_json(e['input'])}: {msg}")
    return ConfigError(lines)


def _json(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
