"""The tag-audio flow: tag a folder (a scheduled inbox) and write the results beside it."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from tasks.tagging import tag_folder


@flow(name="audiotag-tag-audio")
def tag_audio_flow(
    folder: Annotated[str, Field(description="Folder of audio files (searched recursively)")],
    model: Annotated[
        str, Field(description="Model package (runs/<run>/model), model file, or training work dir")
    ],
    top_k: Annotated[int, Field(ge=1, description="Labels per file")] = 3,
    threshold: Annotated[
        float | None,
        Field(
            ge=0, le=1, description=("Every label at or above this probability (instead of top_k)")
        ),
    ] = None,
    output_name: Annotated[
        str, Field(description="Results file written in the folder")
    ] = "audiotag-tags.csv",
) -> str:
    """Tags every audio file under ``folder`` with the ensemble ``model``."""
    top = None if threshold is not None else top_k
    return tag_folder(folder, model, top, threshold, output_name)
