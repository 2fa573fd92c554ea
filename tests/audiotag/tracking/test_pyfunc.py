"""audiotag.tracking.pyfunc: the served model's signature and how it reads each input row."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from audiotag.inference.serving import (
    ENV_ALLOWED_DIRS,
    ENV_LIMITS,
    NO_INPUT,
    PATH_REFUSED,
    PATHS_OFF,
)
from audiotag.inference.tagging import Ensemble
from audiotag.tracking.pyfunc import NO_COLUMNS, AudiotagModel, signature
from tests.helpers.audio import write_tone


def test_the_signature_takes_audio_or_a_path_and_gives_tags_an_error_and_each_label() -> None:
    sig = signature(("Bark", "Run"))
    assert [(c.name, c.type.name, c.required) for c in sig.inputs.inputs] == [
        ("audio", "string", False),
        ("path", "string", False),
    ]
    assert sig.outputs.input_names() == ["tags", "error", "Bark", "Run"]
    assert [c.type.name for c in sig.outputs.inputs] == ["string", "string", "double", "double"]


def _loaded(package: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> AudiotagModel:
    """The served model as MLflow loads it, with ``AUDIOTAG_SERVE_*`` variables set."""
    for name in (ENV_ALLOWED_DIRS, *ENV_LIMITS.values()):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    model = AudiotagModel()
    model.load_context(SimpleNamespace(artifacts={"package": str(package)}))
    return model


def test_each_row_is_tagged_from_its_bytes_or_its_path_or_gets_its_error(
    package: Path,
    vocab: tuple[str, ...],
    tone: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allowed = f"{tone.parent}:{tmp_path}"
    model = _loaded(package, monkeypatch, AUDIOTAG_SERVE_ALLOWED_DIRS=allowed)
    rows = pd.DataFrame.from_records(
        [
            {"audio": base64.b64encode(tone.read_bytes()).decode()},
            {"path": str(tone)},
            {},
            {"audio": "not base64!"},
            {"path": str(tmp_path / "missing.wav")},
            {"audio": base64.b64encode(b"RIFF, but no audio").decode()},
        ]
    )
    out = model.predict(None, rows)

    assert list(out.columns) == ["tags", "error", *vocab]
    assert len(out) == len(rows)
    errors = out["error"].tolist()
    assert errors[:2] == ["", ""]
    assert errors[2] == "row has neither 'audio' nor 'path'"
    assert errors[3] != "" and errors[5].startswith("row 5: unreadable audio")
    assert errors[4] == PATH_REFUSED  # as any refused path: no word of what exists

    ens = Ensemble(package)
    expected = ens.predict([ens.features(tone)])[0]
    for i in (0, 1):  # the same audio, sent or on disk: the same probabilities
        np.testing.assert_allclose(out.loc[i, list(vocab)].to_numpy(float), expected, rtol=1e-6)
        labels = [t.split(":")[0] for t in out.loc[i, "tags"].split(";")]
        assert sorted(labels) == sorted(vocab)  # top 3 of two labels: both
    for i in range(2, 6):
        assert out.loc[i, "tags"] == ""
        assert all(math.isnan(out.loc[i, label]) for label in vocab)


def test_by_default_only_sent_bytes_are_tagged(
    package: Path, tone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _loaded(package, monkeypatch)
    sent = base64.b64encode(tone.read_bytes()).decode()
    out = model.predict(None, pd.DataFrame({"audio": [sent, None], "path": [None, str(tone)]}))
    assert out["error"].tolist() == ["", PATHS_OFF]


def test_every_row_gets_one_answer_and_no_error_names_an_object(
    package: Path, tone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _loaded(
        package, monkeypatch, AUDIOTAG_SERVE_MAX_ROWS="4", AUDIOTAG_SERVE_MAX_SECONDS="2"
    )
    sent = base64.b64encode(tone.read_bytes()).decode()
    long = base64.b64encode(write_tone(tmp_path / "long.wav", seconds=3.0).read_bytes()).decode()
    rows = pd.DataFrame.from_records(
        [
            {"audio": sent, "colour": "red"},  # an unknown column is ignored
            {"colour": "blue"},
            {"audio": long},
            {"audio": base64.b64encode(b"not audio").decode()},
        ]
    )
    out = model.predict(None, rows)
    assert len(out) == 4
    assert out["error"].tolist() == [
        "",
        NO_INPUT,
        "row 2: 3.0 s long; the limit is 2 s",
        "row 3: unreadable audio (Format not recognised.)",
    ]
    # One row over the limit: every row answered with the refusal, none decoded.
    out = model.predict(None, pd.concat([rows, rows.iloc[:1]], ignore_index=True))
    assert (
        out["error"].tolist()
        == ["request refused: 5 rows; the limit is 4 (AUDIOTAG_SERVE_MAX_ROWS)"] * 5
    )
    assert (out["tags"] == "").all()
    # MLflow drops unknown columns: a request with nothing else has lost its rows.
    with pytest.raises(MlflowException, match=NO_COLUMNS):
        model.predict(None, pd.DataFrame(index=range(2)))
