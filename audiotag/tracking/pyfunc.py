"""The ensemble as an MLflow pyfunc model, so that ``mlflow models serve`` tags audio.

Input: a DataFrame with, per row, ``audio`` (base64-encoded file bytes, any
format soundfile reads) or ``path`` (a file on the server's disk). Output: one
row per input with every label's probability, the top labels as text and an
error (empty when the row was tagged).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from audiotag.features.audio import AudioReadError
from audiotag.inference.tagging import Ensemble, select


def signature(vocab: tuple[str, ...]) -> ModelSignature:
    inputs = Schema(
        [ColSpec("string", "audio", required=False), ColSpec("string", "path", required=False)]
    )
    outputs = Schema(
        [ColSpec("string", "tags"), ColSpec("string", "error")]
        + [ColSpec("double", label) for label in vocab]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


class AudiotagModel(mlflow.pyfunc.PythonModel):
    """Loads the model package from the artifact ``package``; tags each input row."""

    def load_context(self, context: Any) -> None:
        self.ensemble = Ensemble(Path(context.artifacts["package"]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        ens = self.ensemble
        feats, errors = {}, {}
        for i, row in enumerate(model_input.to_dict("records")):
            try:
                audio, path = row.get("audio"), row.get("path")
                if isinstance(audio, str) and audio:
                    raw = base64.b64decode(audio, validate=True)
                    feats[i] = ens.features(io.BytesIO(raw), f"row {i}")
                elif isinstance(path, str) and path:
                    feats[i] = ens.features(Path(path))
                else:
                    errors[i] = "row has neither 'audio' nor 'path'"
            except (AudioReadError, binascii.Error, ValueError) as err:
                errors[i] = str(err)
        probs = ens.predict(list(feats.values())) if feats else np.zeros((0, len(ens.vocab)))
        by_row = dict(zip(feats, probs, strict=True))
        records = []
        for i in range(len(model_input)):
            p = by_row.get(i, np.full(len(ens.vocab), np.nan))
            tags = (
                ""
                if i in errors
                else ";".join(f"{label}:{q:.4f}" for label, q in select(p, ens.vocab, 3, None))
            )
            records.append(
                {
                    "tags": tags,
                    "error": errors.get(i, ""),
                    **dict(zip(ens.vocab, p.astype(float), strict=True)),
                }
            )
        return pd.DataFrame.from_records(records)
