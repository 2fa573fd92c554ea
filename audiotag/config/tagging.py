"""The settings of tagging and serving a trained ensemble: no part of a training run's
config (`TrainConfig`), nor of its cache keys."""

from __future__ import annotations

from pydantic import Field

from audiotag.config.settings import _Frozen


class SegmentSettings(_Frozen):
    """How a file's window probabilities become time segments (``audiotag tag --segments``):
    each label's windows at or above its threshold, runs of them merged across short gaps,
    and short segments dropped."""

    min_gap: float = Field(
        1.0, ge=0, description="Seconds: segments of one label closer than this are merged."
    )
    min_duration: float = Field(
        0.0, ge=0, description="Seconds: shorter segments (after merging) are dropped."
    )


class ServeSettings(_Frozen):
    """What the served model (``mlflow models serve``) accepts: its limits and the folders
    it may read. Read from ``AUDIOTAG_SERVE_*`` variables when the model loads
    (`audiotag.inference.serving.serve_settings_from_env`)."""

    allowed_dirs: tuple[str, ...] = Field(
        (), description="Folders a 'path' row may name; none: only sent bytes are tagged."
    )
    max_rows: int = Field(64, gt=0, description="Rows per request.")
    max_row_bytes: int = Field(
        16 * 2**20, gt=0, description="Bytes of audio per row (decoded from base64)."
    )
    max_request_bytes: int = Field(
        64 * 2**20, gt=0, description="Bytes of audio per request, all rows together."
    )
    max_seconds: float = Field(
        120.0, gt=0, description="Seconds of audio per row, read from the file's header."
    )
