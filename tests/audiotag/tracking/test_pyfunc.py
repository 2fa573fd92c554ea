"""audiotag.tracking.pyfunc: the served model's signature and how it reads each input row."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from audiotag.inference.tagging import Ensemble
from audiotag.tracking.pyfunc import AudiotagModel, signature


def test_the_signature_takes_audio_or_a_path_and_gives_tags_an_error_and_each_label() -> None:
    sig = signature(("Bark", "Run"))
    assert [(c.name, c.type.name, c.required) for c in sig.inputs.inputs] == [
        ("audio", "string", False),
        ("path", "string", False),
    ]
    assert sig.outputs.input_names() == ["tags", "error", "Bark", "Run"]
    assert [c.type.name for c in sig.outputs.inputs] == ["string", "string", "double", "double"]


def test_each_row_is_tagged_from_its_bytes_or_its_path_or_gets_its_error(
    package: Path, vocab: tuple[str, ...], tone: Path, tmp_path: Path
) -> None:
    model = AudiotagModel()
    model.load_context(SimpleNamespace(artifacts={"package": str(package)}))
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
    assert errors[4] == f"{tmp_path / 'missing.wav'}: no such file"

    ens = Ensemble(package)
    expected = ens.predict([ens.features(tone)])[0]
    for i in (0, 1):  # the same audio, sent or on disk: the same probabilities
        np.testing.assert_allclose(out.loc[i, list(vocab)].to_numpy(float), expected, rtol=1e-6)
        labels = [t.split(":")[0] for t in out.loc[i, "tags"].split(";")]
        assert sorted(labels) == sorted(vocab)  # top 3 of two labels: both
    for i in range(2, 6):
        assert out.loc[i, "tags"] == ""
        assert all(math.isnan(out.loc[i, label]) for label in vocab)
