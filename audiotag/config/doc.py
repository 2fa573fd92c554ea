"""``docs/config.md``: every override key with each preset's value and its meaning
(`make config-doc` writes it; a test checks that it is current)."""

from __future__ import annotations

from audiotag.config.describe import describe_fields
from audiotag.config.presets import PRESETS, load_config

CONFIG_DOC = "docs/config.md"  # written by `make config-doc`


def render_config_doc() -> str:
    """``docs/config.md``: every override key with each preset's value and its meaning,
    the list the form's ``overrides`` field and ``--set`` take."""
    values: dict[str, dict[str, str]] = {}
    words: dict[str, str] = {}
    for preset in PRESETS:
        for row in describe_fields(load_config(preset)):
            values.setdefault(row.key, {})[preset] = row.value
            words.setdefault(row.key, row.description)
    heads = ["key", *PRESETS, "meaning [allowed]"]
    lines = [
        "# Settings and their override keys",
        "",
        "Generated from `audiotag/config` by `make config-doc`; a test checks that it is",
        "current.",
        "",
        "Change any of these with `audiotag run --set KEY=VALUE` (VALUE as JSON) or, in the",
        'Prefect UI\'s custom run form, in `overrides` as `{"KEY": VALUE}`. A stage is',
        "reached by its name (`curated.cycles.0.epochs`) or its index",
        "(`stages.1.cycles.0.epochs`); `stages.+=<json>` appends one. `audiotag config show",
        "PRESET` prints the same for one preset, overrides applied.",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
    ]
    for key, by_preset in values.items():
        cells = [f"`{key}`", *(by_preset.get(p, "–") for p in PRESETS), words[key]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_config_doc(), end="")
