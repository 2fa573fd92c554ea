"""The ensemble as an MLflow pyfunc model, so that ``mlflow models serve`` tags audio.

Input: a DataFrame with, per row, ``audio`` (base64-encoded file bytes, any
format soundfile reads) or ``path`` (a file on the server's disk, read only inside
the folders the operator allowed). What is accepted and the limits:
`audiotag.inference.serving`, set by ``AUDIOTAG_SERVE_*`` variables when the model
loads. Output: one row per input row, always, in the fields ``audiotag tag --format
json`` writes (`audiotag.inference.tagging.tag_record`): ``path`` (the row's ``path``,
null for sent bytes), ``tags`` (the labels at or above their calibrated thresholds, a
list of ``{"label", "probability"}``; the top three for a package without calibrated
thresholds), ``best`` (the most probable label, whether above
its threshold or not), ``segments`` (only when the request's params ask for them:
``{"segments": true, "min_gap": s, "min_duration": s}``), ``error`` (empty when the row
was tagged), then every label's probability (null in an error row, so that the answer
is strict JSON: MLflow writes a NaN as a bare ``NaN``).
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
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array, Object, Property

from audiotag.config import SegmentSettings
from audiotag.features.audio import AudioReadError
from audiotag.inference.serving import (
    INPUT_COLUMNS,
    RowError,
    read_rows,
    request_refusal,
    row_source,
    serve_settings_from_env,
)
from audiotag.inference.tagging import Ensemble, Tags, file_tags, tag_record

NO_COLUMNS = "no row has an 'audio' or a 'path' column: nothing to tag"
TAG = Object([Property("label", DataType.string), Property("probability", DataType.double)])
SEGMENT = Object(
    [
        Property("start", DataType.double),
        Property("end", DataType.double),
        Property("label", DataType.string),
        Property("probability", DataType.double),
    ]
)
_SEGMENT_DEFAULTS = SegmentSettings()
PARAMS = ParamSchema(
    [
        ParamSpec("segments", DataType.boolean, False),
        ParamSpec("min_gap", DataType.double, _SEGMENT_DEFAULTS.min_gap),
        ParamSpec("min_duration", DataType.double, _SEGMENT_DEFAULTS.min_duration),
    ]
)


def signature(vocab: tuple[str, ...]) -> ModelSignature:
    inputs = Schema(
        [ColSpec("string", "audio", required=False), ColSpec("string", "path", required=False)]
    )
    outputs = Schema(
        [
            ColSpec("string", "path", required=False),
            ColSpec(Array(TAG), "tags"),
            ColSpec(TAG, "best", required=False),
            ColSpec(Array(SEGMENT), "segments", required=False),
            ColSpec("string", "error"),
        ]
        + [ColSpec("double", label, required=False) for label in vocab]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=PARAMS)


class AudiotagModel(mlflow.pyfunc.PythonModel):
    """Loads the model package from the artifact ``package`` and the serving settings
    from the environment; tags each input row."""

    def load_context(self, context: Any) -> None:
        self.settings = serve_settings_from_env()
        self.ensemble = Ensemble(Path(context.artifacts["package"]))

    def _features(self, rows: list[dict]) -> tuple[dict[int, Any], dict[int, str]]:
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
                    feats[i] = self.ensemble.cut_features(source, name, self.settings.max_seconds)
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
        rows: list[dict] = []
        try:
            rows = read_rows(model_input)
            n_rows = len(rows)
            feats, errors = self._features(rows)
        except RowError as err:
            n_rows = len(model_input) if hasattr(model_input, "__len__") else 1
            feats, errors = {}, dict.fromkeys(range(n_rows), str(err))
        params = params or {}
        segments = None
        if params.get("segments"):
            segments = SegmentSettings(
                min_gap=params.get("min_gap", _SEGMENT_DEFAULTS.min_gap),
                min_duration=params.get("min_duration", _SEGMENT_DEFAULTS.min_duration),
            )
        cut = list(feats.values())
        probs, windows = ens.predict_windows([c.logmel for c in cut]) if cut else (None, [])
        at = ens.threshold_array()
        # As `audiotag tag`: each label above its calibrated threshold; a package without
        # them (from before they were calibrated) gives the top 3 labels.
        top_k, cut_at = (3, None) if ens.thresholds is None else (None, at)
        index = {i: k for k, i in enumerate(feats)}
        columns = ["path", "tags", "best", *(["segments"] if segments else []), "error"]
        records = []
        for i in range(n_rows):  # each row is in feats or in errors: one answer each
            path = rows[i]["path"] if i < len(rows) and isinstance(rows[i]["path"], str) else None
            k = index.get(i)
            if k is None:
                records.append(answer_row(ens.vocab, None, None, errors.get(i, ""), path, columns))
                continue
            tags = file_tags("", probs[k], windows[k], cut[k], ens, top_k, cut_at, at, segments)
            records.append(answer_row(ens.vocab, tags, probs[k], "", path, columns))
        # object columns keep None as None (a float column would turn it back into NaN)
        return pd.DataFrame(records, columns=[*columns, *ens.vocab], dtype=object)


def answer_row(
    vocab: tuple[str, ...],
    tags: Tags | None,
    probs: np.ndarray | None,
    error: str,
    path: str | None,
    columns: list[str],
) -> dict[str, Any]:
    """One answer: `tag_record`'s fields (``path`` echoed, ``error`` empty rather than
    null), each label's probability (None without)."""
    rec = tag_record(tags if tags is not None else Tags("", error=error))
    rec = {c: rec.get(c, []) for c in columns}
    rec["path"], rec["error"] = path, error
    if probs is None:
        return {**rec, **dict.fromkeys(vocab)}
    return {**rec, **dict(zip(vocab, map(float, probs), strict=True))}
