"""audiotag/steps/workspace.py: every path of a work dir lies under it, no two coincide,
and every task resolving the same folder sees the same paths."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from audiotag.steps.workspace import TagFolder, Workspace


def every_path(ws: Workspace, key: str = "k1") -> dict[str, Path]:
    """Each property and path method of ``ws`` (methods called with ``key``, stage
    ``noisy``, fold 0), so that a path added later is checked too."""
    out: dict[str, Path] = {}
    for name, attr in vars(Workspace).items():
        if name.startswith("_") or name in ("root", "tracking_uri"):
            continue
        if isinstance(attr, property):
            out[name] = getattr(ws, name)
        elif inspect.isfunction(attr):
            params = list(inspect.signature(attr).parameters)[1:]
            args = {"stage": "noisy", "fold": 0}
            out[name] = getattr(ws, name)(*(args.get(p, key) for p in params))
    return out


def test_every_path_lies_under_the_root_and_no_two_are_the_same(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "work")
    paths = every_path(ws)
    assert len(paths) >= 17  # the data, its sources, tables, stores, models, runs, caches
    for name, path in paths.items():
        assert isinstance(path, Path) and path.is_relative_to(ws.root) and path != ws.root, name
    assert len(set(paths.values())) == len(paths)
    # A path named by a key is another path for another key.
    other = every_path(ws, key="k2")
    for name, attr in vars(Workspace).items():
        if inspect.isfunction(attr) and not name.startswith("_"):
            assert other[name] != paths[name], name


def test_a_stage_folder_is_named_by_stage_and_key_with_a_one_based_fold(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path)
    assert ws.stage_dir("abc", "curated", 0) == ws.root / "models" / "curated-abc" / "fold-1"
    assert ws.stage_dir("abc", "curated", 4).name == "fold-5"
    assert ws.stage_dir("abc", "noisy", 0) != ws.stage_dir("abc", "curated", 0)


def test_at_resolves_a_relative_folder_so_every_task_sees_the_same_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = Workspace.at("work")
    assert relative.root == (tmp_path / "work").resolve() and relative.root.is_absolute()
    assert relative == Workspace.at(tmp_path / "sub" / ".." / "work")
    assert relative.tracking_uri == f"sqlite:///{relative.mlflow_db}"


def test_the_tag_flows_state_lies_in_one_hidden_folder_of_the_tagged_folder(
    tmp_path: Path,
) -> None:
    tf = TagFolder.at(tmp_path / "inbox")
    inside = [tf.results, tf.cache_keys, tf.model_dir("k1"), tf.model_dir("k2")]
    assert all(p.is_relative_to(tf.state) and p != tf.state for p in inside)
    assert len(set(inside)) == len(inside)
    assert tf.state.parent == tf.root and tf.state.name.startswith(".")
    assert tf.output("tags.csv") == tf.root / "tags.csv"
