"""audiotag.tracking.registry: the served model's pins, registering and loading an ensemble."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import packages_distributions
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from audiotag.inference.serving import ENV_ALLOWED_DIRS
from audiotag.inference.tagging import Ensemble, package_digest
from audiotag.tracking.registry import (
    MODEL_NAME,
    SERVED_DISTRIBUTIONS,
    Registration,
    load_ensemble,
    register_ensemble,
    served_requirements,
    vocab_hash,
)
from audiotag.tracking.runs import start_parent

ROOT = Path(__file__).resolve().parents[3]


def test_the_served_models_pins_are_pyprojects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {canonicalize_name(Requirement(r).name): r for r in project["dependencies"]}
    expected = [pins[canonicalize_name(d)] for d in SERVED_DISTRIBUTIONS]
    assert served_requirements() == expected
    assert all("==" in r for r in expected), "the served model needs exact versions"


def test_the_served_distributions_cover_every_import_of_the_loaded_model() -> None:
    # What loading the model imports: the models-from-code file's pyfunc module and the
    # audiotag modules it pulls in, each read for its own imports.
    code = (
        "import json, sys, audiotag.tracking.pyfunc\n"
        "print(json.dumps([m.__file__ for k, m in sys.modules.items()"
        " if k.split('.')[0] == 'audiotag']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    tops = set()
    for file in json.loads(out.stdout.splitlines()[-1]):
        for node in ast.walk(ast.parse(Path(file).read_text())):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
    outside = tops - set(sys.stdlib_module_names) - {"__future__", "audiotag", "mlflow"}
    dists = packages_distributions()
    needed = {canonicalize_name(d) for top in outside for d in dists[top]}
    assert needed <= {canonicalize_name(d) for d in SERVED_DISTRIBUTIONS}


def test_a_package_registered_twice_is_one_version_and_a_better_one_takes_the_champion(
    workdir: Path,
    make_package: Callable[[int], Path],
    package: Path,
    vocab: tuple[str, ...],
    tone: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workdir.mkdir()
    tracking = start_parent(workdir, "run-1", {}, {})
    first = register_ensemble(tracking, package, vocab, 0.5)
    assert first == Registration("1", "champion", new=True)
    # The same files again (every fold from the cache): that version, not a new one.
    assert register_ensemble(tracking, package, vocab, 0.5) == Registration(
        "1", "champion", new=False
    )
    worse = register_ensemble(tracking, make_package(1), vocab, 0.4)
    assert worse == Registration("2", "challenger", new=True)
    better = register_ensemble(tracking, make_package(2), vocab, 0.9)
    assert better == Registration("3", "champion", new=True)
    # Version 1 lost the alias to version 3: found again, it has none.
    assert register_ensemble(tracking, package, vocab, 0.5) == Registration("1", "", new=False)

    client = MlflowClient(tracking.uri)
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == 3
    tags = client.get_model_version(MODEL_NAME, "1").tags
    assert tags == {
        "oof_lwlrap": "0.500000",
        "vocab_hash": vocab_hash(vocab),
        "package_digest": package_digest(package),
    }
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "3"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    reqs = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{MODEL_NAME}/1")).read_text()
    assert set(served_requirements()) <= set(reqs.split())

    ens = load_ensemble(f"models:/{MODEL_NAME}/1")
    assert isinstance(ens, Ensemble)
    assert ens.vocab == vocab
    assert package_digest(ens.path) == package_digest(package)

    # Served as MLflow serves it: the signature lets a row give only a path (read only
    # inside the folders the operator allows).
    monkeypatch.setenv(ENV_ALLOWED_DIRS, str(tone.parent))
    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@challenger")
    out = served.predict(pd.DataFrame({"path": [str(tone)]}))
    assert list(out.columns) == ["tags", "error", *vocab]
    assert out.loc[0, "error"] == ""


def test_loading_a_model_mlflow_does_not_have_names_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir.mkdir()
    tracking = start_parent(workdir, "run-1", {}, {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    with pytest.raises(FileNotFoundError, match="models:/audiotag@champion"):
        load_ensemble("models:/audiotag@champion")


@pytest.mark.parametrize("before", [None, "sqlite:///elsewhere.db"], ids=["unset", "set"])
def test_registering_leaves_the_users_tracking_uri_as_it_was(
    workdir: Path,
    package: Path,
    vocab: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
    before: str | None,
) -> None:
    workdir.mkdir()
    tracking = start_parent(workdir, "run-1", {}, {})
    if before is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", before)
    register_ensemble(tracking, package, vocab, 0.5)
    # MLflow's own context manager deleted a set variable (the next run in the process
    # then tracked into the work dir's store instead of the user's).
    assert os.environ.get("MLFLOW_TRACKING_URI") == before
