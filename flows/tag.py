"""The tag-audio flow: tag a folder (a scheduled inbox) and write the results beside it."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from tasks.tagging import tag_folder


@flow(name="audiotag-tag-audio")
def tag_audio_flow(
    folder: Annotated[str, Field(min_length=1)],
    model: Annotated[str, Field(min_length=1)],
    top_k: Annotated[int, Field(ge=1)] = 3,
    threshold: Annotated[float | None, Field(ge=0, le=1)] = None,
    output_name: Annotated[str, Field(min_length=1)] = "audiotag-tags.csv",
) -> str:
    """Tags every audio file under ``folder`` with the ensemble ``model``.

    Args:
        folder: Folder of audio files, searched recursively.
        model: A model package (runs/<run>/model), a model file, or a training work dir
            (its newest run's package).
        top_k: Labels per file.
        threshold: Every label at or above this probability instead of the top_k.
        output_name: Results file written in the folder.
    """
    top = None if threshold is not None else top_k
    return tag_folder(folder, model, top, threshold, output_name)
