"""audiotag.tracking.registry: the served model's pins, registering and loading an ensemble."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from audiotag.inference.serving import ENV_ALLOWED_DIRS
from audiotag.inference.tagging import Ensemble, all_probabilities, package_digest
from audiotag.tracking.champion import Evidence, HeldOutClip, held_out_lwlrap
from audiotag.tracking.registry import (
    MODEL_NAME,
    SERVED_DISTRIBUTIONS,
    Registration,
    load_ensemble,
    register_ensemble,
    served_requirements,
    vocab_hash,
)
from audiotag.tracking.runs import Tracking, start_parent
from tests.helpers.audio import write_tone

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


def _first(reg: Registration) -> tuple[str, str, bool]:
    return reg.version, reg.alias, reg.new


def test_a_package_registered_twice_is_one_version_and_without_evidence_no_new_champion(
    workdir: Path,
    make_package: Callable[[int], Path],
    package: Path,
    vocab: tuple[str, ...],
    tone: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workdir.mkdir()
    tracking = start_parent(workdir, "run-1", {}, {})
    assert _first(register_ensemble(tracking, package, vocab, 0.5)) == ("1", "champion", True)
    # The same files again (every fold from the cache): that version, not a new one.
    assert _first(register_ensemble(tracking, package, vocab, 0.5)) == ("1", "champion", False)
    # A higher OOF score with nothing saying on what data it was taken is not compared.
    better = register_ensemble(tracking, make_package(1), vocab, 0.9)
    assert _first(better) == ("2", "challenger", True)
    assert "different data or folds: not compared" in better.reason

    client = MlflowClient(tracking.uri)
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == 2
    tags = client.get_model_version(MODEL_NAME, "1").tags
    assert tags["oof_lwlrap"] == "0.500000"
    assert tags["vocab_hash"] == vocab_hash(vocab)
    assert tags["package_digest"] == package_digest(package)
    assert tags["decision"] == "champion"
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"

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
    assert list(out.columns) == ["path", "tags", "best", "error", *vocab]
    assert out.loc[0, "error"] == ""


# --- a fair champion: two models scored on the same held-out clips -------------------


@pytest.fixture(scope="module")
def scored(
    tmp_path_factory: pytest.TempPathFactory,
    make_package: Callable[[int], Path],
    vocab: tuple[str, ...],
) -> dict:
    """Six tones labelled with what package 0 ranks first (so it scores lwlrap 1 on
    them), and a package of another seed that ranks at least one of them wrongly."""
    folder = tmp_path_factory.mktemp("held-out")
    files = [write_tone(folder / f"t{i}.wav", freq=150.0 * 1.8**i) for i in range(6)]
    best = make_package(0)
    probs = all_probabilities(Ensemble(best), files)
    clips = tuple(
        HeldOutClip(str(f), (vocab[int(np.argmax(probs[str(f)]))],), f"sha-{i}")
        for i, f in enumerate(files)
    )
    for seed in range(1, 6):
        worse = make_package(seed)
        score = held_out_lwlrap(all_probabilities(Ensemble(worse), files), list(clips), vocab)
        if score < 1.0:
            break
    else:
        pytest.fail("no seed 1-5 ranks a tone differently from seed 0")
    return {"clips": clips, "best": best, "worse": worse, "worse_lwlrap": score}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracking]:
    """One store for the tests below (a new SQLite store takes seconds); each test
    registers its own model names."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("AUDIOTAG_MLFLOW_UI", raising=False)
        yield start_parent(tmp_path_factory.mktemp("work"), "run-1", {}, {})


def test_a_retrain_that_scores_lower_on_the_same_held_out_clips_stays_challenger(
    tracking: Tracking, scored: dict, vocab: tuple[str, ...]
) -> None:
    evidence = Evidence("data-a", scored["clips"], flow_run_id="run-a", flow_run_url="http://x/a")
    first = register_ensemble(tracking, scored["best"], vocab, 0.5, evidence, name="birds")
    assert (first.alias, first.new) == ("champion", True)
    # A retrain on the same data whose OOF score is higher, but which ranks the same
    # held-out clips worse: the clips decide, and both models were scored on them.
    retrain = Evidence("data-a", scored["clips"], flow_run_id="run-b")
    second = register_ensemble(tracking, scored["worse"], vocab, 0.9, retrain, name="birds")
    assert second.alias == "challenger"
    assert "does not beat champion version 1's 1.0000 on the same 6 labelled clips" in (
        second.reason
    )

    client = MlflowClient(tracking.uri)
    mv = client.get_model_version("birds", second.version)
    assert mv.tags["decision"] == "challenger"
    assert mv.tags["decision_basis"] == "held_out"
    assert float(mv.tags["champion_held_out_lwlrap"]) == 1.0
    assert float(mv.tags["held_out_lwlrap"]) == pytest.approx(scored["worse_lwlrap"], abs=1e-6)
    assert mv.tags["prefect_flow_run_id"] == "run-b"
    for text in (*vocab, "OOF lwlrap: 0.900000", "Prefect flow run: run-b", "held-out lwlrap"):
        assert text in mv.description
    assert str(client.get_model_version_by_alias("birds", "champion").version) == first.version
    assert "http://x/a" in client.get_model_version("birds", first.version).description


def test_two_datasets_in_one_store_each_keep_their_own_champion(
    tracking: Tracking, scored: dict, vocab: tuple[str, ...], tmp_path: Path
) -> None:
    birds = Evidence("data-a", scored["clips"])
    a = register_ensemble(tracking, scored["best"], vocab, 0.5, birds, name="set-a")
    # Another dataset (other clips, other folds), its own model: its first version is its
    # champion whatever its scores, and the first dataset's champion keeps its alias.
    drums = Evidence("data-b", (HeldOutClip(str(tmp_path / "none.wav"), (vocab[0],), "x"),))
    b = register_ensemble(tracking, scored["worse"], vocab, 0.1, drums, name="set-b")
    assert (a.alias, b.alias) == ("champion", "champion")
    client = MlflowClient(tracking.uri)
    assert str(client.get_model_version_by_alias("set-a", "champion").version) == a.version
    assert str(client.get_model_version_by_alias("set-b", "champion").version) == b.version
    assert "compared_with_version" not in client.get_model_version("set-b", b.version).tags


def test_oof_scores_are_compared_only_on_the_same_data_and_folds(
    tracking: Tracking, make_package: Callable[[int], Path], vocab: tuple[str, ...]
) -> None:
    register_ensemble(tracking, make_package(0), vocab, 0.5, Evidence("folds-1"), name="oof")
    other = register_ensemble(
        tracking, make_package(1), vocab, 0.9, Evidence("folds-2"), name="oof"
    )
    assert other.alias == "challenger"
    assert "different data or folds: not compared" in other.reason
    same = register_ensemble(tracking, make_package(2), vocab, 0.9, Evidence("folds-1"), name="oof")
    assert same.alias == "champion"
    assert "OOF lwlrap 0.9000 beats champion version 1's 0.5000 on the same data" in same.reason
    tags = MlflowClient(tracking.uri).get_model_version("oof", same.version).tags
    assert (tags["decision_basis"], tags["champion_oof_lwlrap"]) == ("oof", "0.500000")


def test_held_out_clips_the_champion_trained_on_are_not_used(
    tracking: Tracking, scored: dict, vocab: tuple[str, ...]
) -> None:
    clips = scored["clips"]
    # The champion's run trained on every one of the new run's test clips: scoring it
    # there would flatter it; with other folds, nothing else is comparable.
    leaked = Evidence("data-a", trained=frozenset(c.sha1 for c in clips))
    register_ensemble(tracking, scored["worse"], vocab, 0.5, leaked, name="leak")
    new = register_ensemble(
        tracking, scored["best"], vocab, 0.9, Evidence("data-b", clips), name="leak"
    )
    assert new.alias == "challenger"
    assert "no labelled clips neither it nor champion version 1 trained on" in new.reason


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
