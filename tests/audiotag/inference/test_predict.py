"""audiotag/inference/predict.py: pooling windows into clips, averaging folds, and the
model file: alone enough to predict, safe to load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from audiotag.config import EvalSettings
from audiotag.inference.predict import (
    LoadedModel,
    ensemble,
    pool_windows,
    predict_clips,
    save_model,
)
from audiotag.storage import file_digest
from audiotag.training.batches import Normalizer
from audiotag.training.models import build_model
from tests.helpers.training import WIDTH, synthetic_store, tiny_config

VOCAB = ("low", "high")
NORM = Normalizer(-70.0, 15.0, 60.0)

WINDOWS = np.array([[0.2, 0.9], [0.6, 0.1], [0.5, 0.5], [0.1, 0.4], [0.9, 0.7]])
OWNER = np.array([0, 0, 1, 1, 1])  # clip 0 has two windows, clip 1 three


@pytest.mark.parametrize(
    ("how", "per_clip"),
    [
        ("mean", lambda w: w.mean(axis=0)),
        ("max", lambda w: w.max(axis=0)),
        ("gmean", lambda w: np.exp(np.log(w).mean(axis=0))),
    ],
)
def test_windows_pool_into_their_own_clip(how: str, per_clip) -> None:
    got = pool_windows(WINDOWS, OWNER, 2, how)
    expected = np.stack([per_clip(WINDOWS[:2]), per_clip(WINDOWS[2:])])
    np.testing.assert_allclose(got, expected)


def test_an_unknown_pooling_or_ensemble_mean_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'median'"):
        pool_windows(WINDOWS, OWNER, 2, "median")
    with pytest.raises(ValueError, match="'vote'"):
        ensemble([WINDOWS, WINDOWS], "vote")


def test_folds_are_averaged_arithmetically_or_geometrically() -> None:
    a, b = np.array([[0.1, 0.9]]), np.array([[0.4, 0.1]])
    np.testing.assert_allclose(ensemble([a, b]), [[0.25, 0.5]])
    np.testing.assert_allclose(ensemble([a, b], "gmean"), [[0.2, 0.3]])
    np.testing.assert_allclose(ensemble([a], "gmean"), a)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """An untrained net of the tiny config, saved as noisy fold 3 with a resize to 40."""
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config.model, len(VOCAB)).eval()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, model, VOCAB, config, NORM, 40, "noisy", 3)
    return path, model


def test_a_model_file_keeps_its_vocabulary_config_normaliser_and_weights(saved) -> None:
    path, model = saved
    loaded = LoadedModel(path)
    assert loaded.vocab == VOCAB and loaded.config == tiny_config()
    assert (loaded.norm, loaded.size, loaded.stage, loaded.fold) == (NORM, 40, "noisy", 3)
    weights = loaded.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_a_loaded_model_predicts_every_clip_as_the_network_it_was_saved_from(saved) -> None:
    path, model = saved
    data, clips = synthetic_store(n=6)
    ev = EvalSettings(tta=0)
    probs = LoadedModel(path).predict(data, clips, ev)
    assert probs.shape == (6, 2) and np.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()
    direct = predict_clips(model, data, clips, WIDTH, NORM, 40, ev)
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)


def test_a_clips_probabilities_do_not_depend_on_how_windows_are_batched(saved) -> None:
    path, _ = saved
    model = LoadedModel(path).model
    data, clips = synthetic_store(n=5)
    ev = EvalSettings(tta=0)
    batched = predict_clips(model, data, clips, WIDTH, NORM, 40, ev, batch_size=64)
    one_by_one = predict_clips(model, data, clips, WIDTH, NORM, 40, ev, batch_size=1)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)


def test_windows_cut_from_a_store_on_the_device_predict_as_from_the_file(saved) -> None:
    """Validation cuts its windows from the store training holds on the GPU."""
    model = LoadedModel(saved[0]).model
    data, clips = synthetic_store(n=5)
    ev = EvalSettings(tta=0)
    host = predict_clips(model, data, clips, WIDTH, NORM, 40, ev)
    held = predict_clips(
        model, data, clips, WIDTH, NORM, 40, ev, device_data=torch.from_numpy(data)
    )
    np.testing.assert_array_equal(host, held)


def test_the_same_model_saved_twice_gives_the_same_bytes(saved, tmp_path: Path) -> None:
    """Fold cache keys read the bytes of the weights a fold starts from."""
    path, model = saved
    again = tmp_path / "elsewhere" / "copy.pt"
    save_model(again, model, VOCAB, tiny_config(), NORM, 40, "noisy", 3)
    assert file_digest(again) == file_digest(path)


def test_a_file_that_is_not_an_audiotag_model_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not an audiotag model file"):
        LoadedModel(other)


class _Payload:
    def __reduce__(self):  # what a crafted pickle runs on load
        return (Path.touch, (Path(_Payload.marker),))


def test_a_crafted_model_file_cannot_run_code(tmp_path: Path) -> None:
    _Payload.marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "state_dict": _Payload()}, evil, pickle_protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        LoadedModel(evil)
    assert not (tmp_path / "pwned").exists()
