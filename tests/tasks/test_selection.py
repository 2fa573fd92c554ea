"""tasks/selection.py: every stage a config accepts gets a selection artifact key that
Prefect accepts, its own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prefect.client.schemas.actions import ArtifactCreate
from pydantic import ValidationError

from audiotag.config import StageSettings
from tasks.selection import artifact_key

# What StageSettings.name accepts (a lowercase letter, then letters, digits, underscores).
STAGE_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)


def test_prefect_refuses_an_underscore_in_an_artifact_key() -> None:
    # What the key's spelling guards against: create_table_artifact would fail the task.
    with pytest.raises(ValidationError, match="lowercase letters, numbers, and dashes"):
        ArtifactCreate(key="noisy-selection-plus_two", type="table")


@given(name=STAGE_NAMES)
def test_every_valid_stage_name_gives_an_artifact_key_prefect_accepts(name: str) -> None:
    StageSettings(name=name, subsets=("curated",), cycles=[{"epochs": 1, "lr": 1e-3}])
    key = artifact_key(name)
    assert ArtifactCreate(key=key, type="table").key == key
    assert key.startswith("noisy-selection-")


@given(a=STAGE_NAMES, b=STAGE_NAMES)
def test_two_stages_never_share_a_selection_artifact(a: str, b: str) -> None:
    assert (artifact_key(a) == artifact_key(b)) == (a == b)
