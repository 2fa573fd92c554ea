"""audiotag/steps/ensemble.py: the run's out-of-fold score, its submission and package, on
untrained fold models (nothing to train: the step only combines what folds wrote)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from audiotag.config import load_config
from audiotag.data.metadata import describe_file
from audiotag.data.schemas import KEPT_SCHEMA, label_table, write_label_table
from audiotag.features.store import build_feature_store
from audiotag.inference.predict import save_model
from audiotag.inference.tagging import Ensemble
from audiotag.inference.thresholds import calibrate_thresholds
from audiotag.metrics import lwlrap
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.ensemble import predict_test
from audiotag.steps.workspace import Workspace
from audiotag.training.batches import Normalizer
from audiotag.training.models import build_model
from audiotag.training.stage import StageResult
from tests.helpers.audio import write_tone

VOCAB = ("Bark", "Run")
CURATED = {"c0.wav": ["Bark"], "c1.wav": ["Run"], "c2.wav": ["Bark"], "c3.wav": ["Bark", "Run"]}
TEST = {"t0.wav": ["Bark"], "t1.wav": ["Run"]}
SAMPLE = ["t1.wav", "gone.wav", "t0.wav"]  # gone.wav was rejected: not in the store


def _fold_models(
    tmp: Path, vocab: tuple[str, ...], curated: dict, test: dict, sample: list[str]
) -> tuple:
    """Two untrained curated fold models and their held-out tables, and a store of the
    test clips: (workspace, data dir, dataset info, store, config, models, held-out)."""
    ws, data = Workspace.at(tmp / "work"), tmp / "data"
    config = load_config("debug", {"eval.tta": 0})
    for i, name in enumerate(test):
        write_tone(data / "test" / name, freq=500.0 * (i + 1), seconds=0.6)
    pd.DataFrame([[n, *[0] * len(vocab)] for n in sample], columns=["fname", *vocab]).to_csv(
        data / "sample_submission.csv", index=False
    )
    test_rows = [describe_file(data, n, "test", labels) for n, labels in test.items()]
    rows = [{"fname": n, "subset": "curated", "labels": lb} for n, lb in curated.items()]
    ws.root.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows + test_rows, schema=KEPT_SCHEMA), ws.kept)
    store = build_feature_store(test_rows, data, config.mel, ws.features("abc"))
    rng = np.random.default_rng(0)
    models, valid = [], []
    names = list(curated)
    for k, held in enumerate((names[:2], names[2:])):
        fold_dir = ws.stage_dir("key", "curated", k)
        torch.manual_seed(k)
        model = build_model(config.model, len(vocab))
        save_model(
            fold_dir / "model.pt", model, vocab, config, Normalizer(-60, 20, 60), None, "curated", k
        )
        probs = rng.random((2, len(vocab)))
        valid.append(label_table(held, k, probs, vocab))
        write_label_table(valid[-1], vocab, fold_dir / "valid.parquet")
        models.append(StageResult("curated", k, str(fold_dir / "model.pt"), 0.5 + k / 10, 0.1))
    counts = (("curated", len(curated)), ("test", len(test)))
    info = DatasetInfo(str(data), "fp", vocab, len(curated) + len(test), 1, counts)
    return ws, data, info, store, config, models, valid


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The ensemble step once and again on the same fold models."""
    tmp = tmp_path_factory.mktemp("ensemble")
    ws, data, info, store, config, models, valid = _fold_models(tmp, VOCAB, CURATED, TEST, SAMPLE)
    first = predict_test(ws, info, store, config, models, ws.run_dir("one"))
    predictions = {p: p.stat().st_mtime_ns for p in (ws.root / "predictions").iterdir()}
    again = predict_test(ws, info, store, config, models, ws.run_dir("two"))
    return {
        "ws": ws,
        "data": data,
        "first": first,
        "again": again,
        "valid": valid,
        "predictions": predictions,
    }


def test_the_oof_score_is_each_held_out_clip_scored_by_its_own_fold(run: dict) -> None:
    oof = pd.concat(run["valid"], ignore_index=True)
    truth = np.array([[v in CURATED[f] for v in VOCAB] for f in oof.fname])
    assert run["first"].oof_lwlrap == pytest.approx(lwlrap(truth, oof[list(VOCAB)].to_numpy()))
    written = pd.read_parquet(run["first"].oof)
    assert sorted(written.fname) == sorted(CURATED) and written.fold.tolist() == [0, 0, 1, 1]
    scores = json.loads(Path(run["first"].scores).read_text())
    assert scores["folds"] == {"curated/1": 0.5, "curated/2": 0.6}
    assert scores["test_missing"] == ["gone.wav"]


def test_thresholds_calibrated_on_the_oof_predictions_are_in_the_package_and_scored(
    run: dict,
) -> None:
    oof = pd.concat(run["valid"], ignore_index=True)
    truth = np.array([[v in CURATED[f] for v in VOCAB] for f in oof.fname])
    expected = calibrate_thresholds(truth, oof[list(VOCAB)].to_numpy(), VOCAB)
    scores = json.loads(Path(run["first"].scores).read_text())
    assert scores["thresholds"] == expected.to_json()
    # Bark has 3 positives among the 4 held-out clips, Run 2: the global threshold.
    assert scores["thresholds"]["fallback"] == ["Run"]
    ens = Ensemble(Path(run["first"].model_dir))
    np.testing.assert_allclose(ens.threshold_array(), expected.array(VOCAB), atol=1e-6)
    at = scores["oof_at_thresholds"]
    assert set(at["per_class"]["Bark"]) == {"precision", "recall", "f1", "positives"}
    assert run["first"].oof_micro_f1 == at["micro_f1"]
    assert set(scores["test_micro_f1"]) == {"calibrated", "top_3", "global_0.5"}
    assert run["first"].test_micro_f1 == scores["test_at_thresholds"]["micro_f1"]


def test_the_submission_follows_the_sample_and_tagging_with_the_package_gives_its_rows(
    run: dict,
) -> None:
    sub = pd.read_csv(run["first"].submission)
    assert list(sub.columns) == ["fname", *VOCAB] and sub.fname.tolist() == SAMPLE
    # A clip without features gets the scored subset's label frequencies.
    assert sub.iloc[1, 1:].tolist() == pytest.approx([3 / 4, 2 / 4])
    ens = Ensemble(Path(run["first"].model_dir))
    assert len(ens.models) == 2 and ens.vocab == VOCAB
    tagged = ens.predict([ens.features(run["data"] / "test" / sub.fname[i]) for i in (0, 2)])
    np.testing.assert_allclose(sub.iloc[[0, 2], 1:].to_numpy(float), tagged, atol=2e-6)
    assert run["first"].test_lwlrap is not None  # the test clips have labels


def test_a_second_run_on_the_same_models_reads_the_test_predictions_back(run: dict) -> None:
    (path, mtime), *rest = run["predictions"].items()
    assert not rest and path.stat().st_mtime_ns == mtime
    assert list((run["ws"].root / "predictions").iterdir()) == [path]
    one, two = Path(run["first"].submission), Path(run["again"].submission)
    assert one.read_bytes() == two.read_bytes() and one != two


def test_a_test_set_that_cannot_be_scored_still_gets_its_submission_package_and_scores(
    tmp_path: Path,
) -> None:
    # Every test label is outside the vocabulary: lwlrap is undefined there; one label
    # would run as a formula in a spreadsheet.
    vocab = ("Bark", '=HYPERLINK("http://evil")')
    test = {"t0.wav": ["Moo"], "t1.wav": ["Oink"]}
    ws, _, info, store, config, models, _ = _fold_models(
        tmp_path, vocab, CURATED | {"c3.wav": ["Bark"]}, test, list(test)
    )
    result = predict_test(ws, info, store, config, models, ws.run_dir("r"))
    assert result.test_lwlrap is None and result.oof_lwlrap is not None
    assert result.not_scored == (
        "test lwlrap: not scored, none of its 2 labelled clips has a label in the vocabulary",
    )
    scores = json.loads(Path(result.scores).read_text())
    assert scores["not_scored"] == list(result.not_scored) and scores["oof_per_class"]
    assert Ensemble(Path(result.model_dir)).vocab == vocab
    header = Path(result.submission).read_text().splitlines()[0]
    assert header == 'fname,Bark,"\'=HYPERLINK(""http://evil"")"'
    assert pd.read_csv(result.submission).shape == (2, 3)
