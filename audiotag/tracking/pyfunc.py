"""The ensemble as an MLflow pyfunc model, so that ``mlflow models serve`` tags audio.

Input: a DataFrame with, per row, ``audio`` (base64-encoded file bytes, any
format soundfile reads) or ``path`` (a file on the server's disk, read only inside
the folders the operator allowed). What is accepted and the limits:
`audiotag.inference.serving`, set by ``AUDIOTAG_SERVE_*`` variables when the model
loads. Output: one row per input row, always: ``tags`` (the top three labels, a list
of ``{"label", "probability"}`` as ``audiotag tag --format json`` writes them), ``error``
(empty when the row was tagged) and every label's probability (null in an error row,
so that the answer is strict JSON: MLflow writes a NaN as a bare ``NaN``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array, Object, Property

from audiotag.features.audio import AudioReadError
from audiotag.inference.serving import (
    INPUT_COLUMNS,
    RowError,
    read_rows,
    request_refusal,
    row_source,
    serve_settings_from_env,
)
from audiotag.inference.tagging import Ensemble, select

NO_COLUMNS = "no row has an 'audio' or a 'path' column: nothing to tag"
TOP_K = 3
TAG = Object([Property("label", DataType.string), Property("probability", DataType.double)])


def signature(vocab: tuple[str, ...]) -> ModelSignature:
    inputs = Schema(
        [ColSpec("string", "audio", required=False), ColSpec("string", "path", required=False)]
    )
    outputs = Schema(
        [ColSpec(Array(TAG), "tags"), ColSpec("string", "error")]
        + [ColSpec("double", label, required=False) for label in vocab]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


class AudiotagModel(mlflow.pyfunc.PythonModel):
    """Loads the model package from the artifact ``package`` and the serving settings
    from the environment; tags each input row."""

    def load_context(self, context: Any) -> None:
        self.settings = serve_settings_from_env()
        self.ensemble = Ensemble(Path(context.artifacts["package"]))

    def _features(self, rows: list[dict]) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        feats, errors = {}, {}
        refusal = request_refusal(rows, self.settings)
        for i, row in enumerate(rows):
            if refusal is not None:
                errors[i] = refusal
                continue
            name = f"row {i}"
            try:
                source, name = row_source(row, i, self.settings)
                with source:
                    feats[i] = self.ensemble.features(source, name, self.settings.max_seconds)
            except RowError as err:
                errors[i] = str(err)
            except AudioReadError as err:
                errors[i] = f"{name}: {err.problem}"
            except ValueError as err:  # audio no log-mel can be made of; never its repr
                errors[i] = f"{name}: cannot be tagged ({type(err).__name__})"
        return feats, errors

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        ens = self.ensemble
        if (
            isinstance(model_input, pd.DataFrame)
            and model_input.empty
            and not set(INPUT_COLUMNS) & set(model_input.columns)
        ):
            # MLflow drops the columns the signature lacks, and with them every row of a
            # request that has no other: no answer row can be made, so a clear HTTP 400.
            raise MlflowException(NO_COLUMNS, error_code=BAD_REQUEST)
        try:
            rows = read_rows(model_input)
            n_rows = len(rows)
            feats, errors = self._features(rows)
        except RowError as err:
            n_rows = len(model_input) if hasattr(model_input, "__len__") else 1
            feats, errors = {}, dict.fromkeys(range(n_rows), str(err))
        probs = ens.predict(list(feats.values())) if feats else np.zeros((0, len(ens.vocab)))
        by_row = dict(zip(feats, probs, strict=True))
        records = []
        for i in range(n_rows):  # each row is in feats or in errors: one answer each
            records.append(answer_row(ens.vocab, by_row.get(i), errors.get(i, "")))
        # object columns keep None as None (a float column would turn it back into NaN)
        return pd.DataFrame(records, columns=["tags", "error", *ens.vocab], dtype=object)


def answer_row(vocab: tuple[str, ...], probs: np.ndarray | None, error: str) -> dict[str, Any]:
    """One answer: the top labels, the error, each label's probability (None without)."""
    if probs is None:
        return {"tags": [], "error": error, **dict.fromkeys(vocab)}
    tags = [
        {"label": label, "probability": round(float(q), 6)}
        for label, q in select(probs, vocab, TOP_K, None)
    ]
    return {"tags": tags, "error": error, **dict(zip(vocab, map(float, probs), strict=True))}
