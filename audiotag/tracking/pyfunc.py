"""The ensemble as an MLflow pyfunc model, so that ``mlflow models serve`` tags audio.

Input: a DataFrame with, per row, ``audio`` (base64-encoded file bytes, any
format soundfile reads) or ``path`` (a file on the server's disk, read only inside
the folders the operator allowed). What is accepted and the limits:
`audiotag.inference.serving`, set by ``AUDIOTAG_SERVE_*`` variables when the model
loads. Output: one row per input row, always, with every label's probability, the
top labels as text and an error (empty when the row was tagged).
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
from mlflow.types import ColSpec, Schema

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
        return pd.DataFrame.from_records(records, columns=["tags", "error", *ens.vocab])
