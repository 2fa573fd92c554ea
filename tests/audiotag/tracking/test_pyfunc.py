"""audiotag.tracking.pyfunc: the served model's signature and how it reads each input row."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from audiotag.config import SegmentSettings
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
from tests.helpers.flows import strict_json


def test_the_signature_takes_audio_or_a_path_and_gives_the_tag_fields_and_each_label() -> None:
    sig = signature(("Bark", "Run"))
    assert [(c.name, c.type.name, c.required) for c in sig.inputs.inputs] == [
        ("audio", "string", False),
        ("path", "string", False),
    ]
    assert sig.outputs.input_names() == ["path", "tags", "best", "segments", "error", "Bark", "Run"]
    path, tags, best, segments, error, *labels = sig.outputs.inputs
    assert tags.type.to_dict()["items"]["properties"].keys() == {"label", "probability"}
    assert best.type.to_dict()["properties"].keys() == {"label", "probability"}
    assert segments.type.to_dict()["items"]["properties"].keys() == {
        "start",
        "end",
        "label",
        "probability",
    }
    assert error.type.name == "string" and path.type.name == "string"
    assert [(c.type.name, c.required) for c in labels] == [("double", False)] * 2
    assert {p.name: p.default for p in sig.params.params}["segments"] is False


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

    assert list(out.columns) == ["path", "tags", "best", "error", *vocab]
    assert out["path"].tolist() == [
        None,
        str(tone),
        None,
        None,
        str(tmp_path / "missing.wav"),
        None,
    ]
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
        tags = out.loc[i, "tags"]
        assert sorted(t["label"] for t in tags) == sorted(vocab)  # top 3 of two labels: both
        assert tags[0]["probability"] == pytest.approx(expected.max(), abs=1e-6)
    for i in range(2, 6):
        assert out.loc[i, "tags"] == []
        assert all(out.loc[i, label] is None for label in vocab)


def test_the_answer_as_mlflow_writes_it_is_strict_json_with_null_for_error_rows(
    package: Path, vocab: tuple[str, ...], tone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.pyfunc.scoring_server import predictions_to_json

    model = _loaded(package, monkeypatch)
    sent = base64.b64encode(tone.read_bytes()).decode()
    out = model.predict(None, pd.DataFrame({"audio": [sent, "not base64!"]}))
    text = io.StringIO()
    predictions_to_json(out, text)
    good, bad = strict_json(text.getvalue())["predictions"]
    assert [t["label"] for t in good["tags"]] == sorted(vocab, key=lambda lb: -good[lb])
    assert all(isinstance(good[label], float) for label in vocab)
    assert bad["tags"] == [] and bad["error"] and all(bad[lb] is None for lb in vocab)


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
    assert all(t == [] for t in out["tags"])
    # MLflow drops unknown columns: a request with nothing else has lost its rows.
    with pytest.raises(MlflowException, match=NO_COLUMNS):
        model.predict(None, pd.DataFrame(index=range(2)))


def test_loading_the_served_model_warns_of_nothing() -> None:
    """fastai's torch.jit FutureWarning (on every tag, serve and worker) is not printed."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::FutureWarning",
            "-c",
            "import audiotag.tracking.serving_model",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_answer_has_the_clis_fields_tags_at_calibrated_thresholds_and_segments_on_request(
    tmp_path: Path, vocab: tuple[str, ...], tone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiotag.inference.tagging import tag_files, tag_record
    from tests.helpers.packages import write_tiny_package

    package = write_tiny_package(tmp_path, 0, vocab, thresholds={vocab[0]: 0.0, vocab[1]: 1.0})
    model = _loaded(package, monkeypatch)
    sent = pd.DataFrame({"audio": [base64.b64encode(tone.read_bytes()).decode()]})
    plain = model.predict(None, sent)
    assert [t["label"] for t in plain.loc[0, "tags"]] == [vocab[0]]  # above its own only
    out = model.predict(None, sent, params={"segments": True, "min_gap": 0.5})
    assert list(out.columns) == ["path", "tags", "best", "segments", "error", *vocab]
    (cli,) = tag_files(
        Ensemble(package), [tone], per_class=True, segments=SegmentSettings(min_gap=0.5)
    )
    expected = tag_record(cli)
    for field in ("tags", "best", "segments"):
        got = out.loc[0, field]
        assert got == pytest.approx(expected[field]) if field == "best" else got == expected[field]
    assert [s["label"] for s in out.loc[0, "segments"]] == [vocab[0]]
