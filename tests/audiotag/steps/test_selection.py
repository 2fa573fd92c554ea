"""Noisy selection: out-of-fold predictions only, threshold, label cap, relabelling, and
the rows a selection stage trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import label_ranking_average_precision_score

from audiotag.config import load_config
from audiotag.config.settings import SelectionSettings
from audiotag.metrics import clip_lwlrap
from audiotag.steps.dataset import DatasetInfo, split_fold, stage_rows
from audiotag.steps.selection import decide, predict_unseen, select_noisy
from audiotag.steps.workspace import Workspace
from audiotag.training.stage import StageResult
from tests.helpers.workdirs import write_prepared

VOCAB = ("a", "b", "c")
N_FOLDS = 3
PLUS = {
    "name": "plus",
    "subsets": ["curated"],
    "init": "curated",
    "noisy_selection": {},
    "cycles": [{"epochs": 1, "lr": 1e-3}],
}


def config(selection: dict | None = None, **overrides):
    plus = {**PLUS, "noisy_selection": selection or {}}
    return load_config("debug", {"folds.n_folds": N_FOLDS, "stages.+": plus, **overrides})


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """12 curated and 15 noisy clips in 3 folds (fold = index mod 3)."""
    ws = Workspace.at(tmp_path / "work")
    counts = {"curated": 12, "noisy": 15}
    write_prepared(ws, counts, N_FOLDS, VOCAB, labels={"n14.wav": ["not-a-label"]})
    return ws


INFO = DatasetInfo("d", "fp", VOCAB, 27, 0, (("curated", 12), ("noisy", 15)))


def init_models(tmp_path: Path, stage: str = "curated", tag: str = "") -> list[StageResult]:
    out = []
    for j in range(N_FOLDS):
        path = tmp_path / f"{stage}-{j}.pt"
        path.write_bytes(f"model {stage} {j} {tag}".encode())
        out.append(StageResult(stage, j, str(path), 0.0, 0.0))
    return out


class FakePredict:
    """Records which model predicted which clip; each model gives its own probabilities:
    the clip's label at ``0.5 + 0.1 * (fold + 1)``, the others at 0.1 (n00-n04 inverted)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, model: Path, rows: list[dict]) -> np.ndarray:
        j = int(model.stem.rsplit("-", 1)[1])
        out = np.full((len(rows), len(VOCAB)), 0.1)
        for i, row in enumerate(rows):
            self.calls.append((j, row["fname"]))
            label = row["labels"][0]
            c = VOCAB.index(label) if label in VOCAB else 2
            if int(row["fname"][1:3]) < 5:  # the model disagrees with these labels
                c = 2
            out[i, c] = 0.5 + 0.1 * (j + 1)
        return out


def read(path: Path) -> dict[str, dict]:
    return {r["fname"]: r for r in pq.read_table(path).to_pylist()}


def test_clip_lwlrap_is_each_clips_label_ranking_average_precision() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((40, 6)) < 0.3
    truth[np.arange(40), rng.integers(0, 6, 40)] = True
    scores = rng.random((40, 6))
    scores[rng.random((40, 6)) < 0.2] = 0.5  # ties
    got = clip_lwlrap(truth, scores)
    for i in range(40):
        assert got[i] == pytest.approx(
            label_ranking_average_precision_score(truth[i : i + 1], scores[i : i + 1])
        )
    assert np.isnan(clip_lwlrap(np.zeros((1, 3)), np.ones((1, 3))))[0]


def test_a_clip_is_predicted_only_by_models_that_never_trained_on_it(
    ws: Workspace, tmp_path: Path
) -> None:
    fake = FakePredict()
    select_noisy(
        ws, INFO, tmp_path / "store", config(), "plus", init_models(tmp_path), predict=fake
    )
    # The lineage (curated from noisy) trained fold model j on noisy fold j's training part.
    seen = {j: {r["fname"] for r in split_fold(ws, "noisy", j)[0]} for j in range(N_FOLDS)}
    assert fake.calls and all(fname not in seen[j] for j, fname in fake.calls)
    # Each noisy clip is held out by one fold: exactly that fold's model predicts it.
    assert sorted(f for _, f in fake.calls) == [f"n{i:02d}.wav" for i in range(15)]
    assert all(j == int(f[1:3]) % N_FOLDS for j, f in fake.calls)


def test_without_noisy_training_in_the_lineage_every_model_predicts_every_clip(
    ws: Workspace, tmp_path: Path
) -> None:
    scratch = {"name": "curated", "subsets": ["curated"], "cycles": [{"epochs": 1, "lr": 1e-3}]}
    cfg = load_config("debug", {"folds.n_folds": N_FOLDS, "stages": [scratch, PLUS]})
    fake = FakePredict()
    select_noisy(ws, INFO, tmp_path / "s", cfg, "plus", init_models(tmp_path), predict=fake)
    assert sorted(fake.calls) == sorted((j, f"n{i:02d}.wav") for j in range(3) for i in range(15))


def test_a_clips_prediction_is_the_mean_of_its_unseen_models_only() -> None:
    rows = [{"fname": "x"}, {"fname": "y"}, {"fname": "z"}]
    models = [Path(f"m-{j}") for j in range(3)]

    def predict(model: Path, part: list[dict]) -> np.ndarray:
        return np.full((len(part), 2), float(model.name[-1]))

    probs, has = predict_unseen(rows, [[0, 2], [1], []], models, predict, 2)
    assert probs[:, 0].tolist() == [1.0, 1.0, 0.0] and has.tolist() == [True, True, False]


def test_the_threshold_and_the_label_cap_keep_exactly_the_expected_clips() -> None:
    rows = [
        {"fname": "x1", "labels": ["a"]},  # a first: 1.0
        {"fname": "x2", "labels": ["a"]},  # a second: 0.5
        {"fname": "x3", "labels": ["a"]},  # a third: 1/3
        {"fname": "x4", "labels": ["b"]},  # 1.0
        {"fname": "x5", "labels": ["a", "b"]},  # (1 + 2/3) / 2
        {"fname": "x6", "labels": ["zzz"]},
        {"fname": "x7", "labels": ["a"]},  # no prediction
    ]
    probs = np.array(
        [
            [0.9, 0.1, 0.1],
            [0.5, 0.6, 0.1],
            [0.1, 0.6, 0.5],
            [0.2, 0.8, 0.1],
            [0.9, 0.1, 0.5],
            [0.9, 0.1, 0.1],
            [0.0, 0.0, 0.0],
        ]
    )
    has = np.array([True] * 6 + [False])

    def run(**settings) -> dict[str, dict]:
        out = decide(rows, probs, has, VOCAB, SelectionSettings(**settings))
        return {r["fname"]: r for r in out}

    default = run()
    assert {f for f, r in default.items() if r["kept"]} == {"x1", "x2", "x4", "x5"}
    assert [default[f]["clip_lwlrap"] for f in ("x1", "x2", "x3")] == pytest.approx(
        [1.0, 0.5, 1 / 3]
    )
    assert default["x5"]["clip_lwlrap"] == pytest.approx(5 / 6)
    assert {f: r["reason"] for f, r in default.items() if not r["kept"]} == {
        "x3": "below_threshold",
        "x6": "no_label_in_vocabulary",
        "x7": "no_unseen_model",
    }
    assert default["x6"]["clip_lwlrap"] is None and default["x7"]["clip_lwlrap"] is None
    assert {f for f, r in run(min_lwlrap=0.9).items() if r["kept"]} == {"x1", "x4"}
    # Two per label, best first: x1 (a), x4 (b), x5 (a, b); x2 would be a's third.
    capped = run(max_per_label=2)
    assert {f for f, r in capped.items() if r["kept"]} == {"x1", "x4", "x5"}
    assert capped["x2"]["reason"] == "over_label_cap"
    assert {f for f, r in run(max_per_label=1).items() if r["kept"]} == {"x1", "x4"}


def test_relabelling_gives_a_disagreeing_clip_its_confident_predictions() -> None:
    rows = [
        {"fname": "agrees", "labels": ["a"]},
        {"fname": "wrong", "labels": ["a"]},
        {"fname": "unsure", "labels": ["a"]},
        {"fname": "foreign", "labels": ["zzz"]},
    ]
    probs = np.array([[0.9, 0.1, 0.1], [0.1, 0.95, 0.2], [0.1, 0.5, 0.4], [0.92, 0.97, 0.1]])
    has = np.ones(4, dtype=bool)
    out = decide(rows, probs, has, VOCAB, SelectionSettings(relabel=True, relabel_min_prob=0.9))
    by = {r["fname"]: r for r in out}
    assert by["agrees"]["reason"] == "agrees" and by["agrees"]["new_labels"] == ["a"]
    assert by["wrong"]["reason"] == "relabelled" and by["wrong"]["kept"]
    assert by["wrong"]["labels"] == ["a"] and by["wrong"]["new_labels"] == ["b"]
    assert by["foreign"]["new_labels"] == ["b", "a"] and by["foreign"]["kept"]
    assert by["unsure"]["reason"] == "below_threshold" and not by["unsure"]["kept"]
    # Without relabelling the same clips are not kept.
    plain = decide(rows, probs, has, VOCAB, SelectionSettings())
    assert [r["fname"] for r in plain if r["kept"]] == ["agrees"]
    # The cap ranks agreeing clips before relabelled ones.
    capped = decide(rows, probs, has, VOCAB, SelectionSettings(relabel=True, max_per_label=1))
    assert {r["fname"]: r["reason"] for r in capped}["foreign"] == "over_label_cap"


def test_the_file_is_keyed_and_read_back(ws: Workspace, tmp_path: Path) -> None:
    models, store = init_models(tmp_path), tmp_path / "store"
    first = FakePredict()
    path = select_noisy(ws, INFO, store, config(), "plus", models, predict=first)
    assert path.parent == ws.root / "models" and path.name.startswith("selection-")
    again = FakePredict()
    assert select_noisy(ws, INFO, store, config(), "plus", models, predict=again) == path
    assert not again.calls  # read back
    other = select_noisy(
        ws, INFO, store, config({"min_lwlrap": 0.9}), "plus", models, predict=first
    )
    (tmp_path / "r").mkdir()
    retrained = init_models(tmp_path / "r", tag="retrained")
    newer = select_noisy(ws, INFO, store, config(), "plus", retrained, predict=first)
    assert len({path, other, newer}) == 3


def test_a_selection_stage_trains_on_kept_noisy_clips_and_never_on_its_held_out_curated(
    ws: Workspace, tmp_path: Path
) -> None:
    cfg = config({"relabel": True, "relabel_min_prob": 0.75})
    models = init_models(tmp_path)
    path = select_noisy(ws, INFO, tmp_path / "s", cfg, "plus", models, predict=FakePredict())
    table = read(path)
    kept = {f: r["new_labels"] for f, r in table.items() if r["kept"]}
    # n00-n04 are predicted as c against their labels; only fold 2's model (which
    # predicts n02 and n14) is sure enough of it to relabel them.
    assert {f: r["reason"] for f, r in table.items() if not r["kept"]} == {
        f: "below_threshold" for f in ("n00.wav", "n01.wav", "n03.wav", "n04.wav")
    }
    assert kept["n02.wav"] == kept["n14.wav"] == ["c"] and table["n02.wav"]["labels"] == ["a"]
    assert len(kept) == 11
    for k in range(N_FOLDS):
        train, valid = stage_rows(ws, cfg.stage("plus"), k, path)
        held = {r["fname"] for r in split_fold(ws, "curated", k)[1]}
        assert {r["fname"] for r in valid} == held
        assert not held & {r["fname"] for r in train if r["subset"] == "curated"}
        noisy = {r["fname"]: r["labels"] for r in train if r["subset"] == "noisy"}
        assert noisy == kept  # every kept clip, whatever its fold, with its new labels
        assert len(train) == 8 + len(kept)
    # Without the file the stage trains on its curated part only.
    assert {r["subset"] for r in stage_rows(ws, cfg.stage("plus"), 0)[0]} == {"curated"}
