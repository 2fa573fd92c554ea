"""The tag-audio flow: tag a folder (an inbox) in chunks and write the results beside it."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from tasks.runners import task_submitter
from tasks.tagging import (
    ChunksFailed,
    chunk_task,
    failed_chunks,
    list_audio_files,
    resolve_tag_model,
    split_files,
    write_tag_results,
)


# One chunk at a time in the flow's own process: each already uses every core (torch);
# more at once go to a Dask cluster (dask_address), one chunk per worker thread.
@flow(name="audiotag-tag-audio", task_runner=ThreadPoolTaskRunner(max_workers=1))
def tag_audio_flow(
    folder: Annotated[str, Field(min_length=1)],
    model: Annotated[str, Field(min_length=1)],
    top_k: Annotated[int | None, Field(ge=1)] = None,
    threshold: Annotated[float | None, Field(ge=0, le=1)] = None,
    output_name: Annotated[str, Field(min_length=1)] = "audiotag-tags.csv",
    chunk_size: Annotated[int, Field(ge=1, le=100_000)] = 200,
    dask_address: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Tags every audio file under ``folder`` with the ensemble ``model``, in chunks.

    A chunk's rows are kept once it finishes: a re-run after a failure or a kill tags
    only the chunks that did not finish (and chunks whose files or model changed).

    Args:
        folder: Folder of audio files, searched recursively.
        model: A registered model (``models:/audiotag@champion``, ``models:/NAME/3``), a
            model package (runs/<run>/model), a model file, or a training work dir (its
            newest run's package).
        top_k: The K most probable labels per file instead of each label's calibrated
            threshold (empty: those thresholds, as ``audiotag tag``; a package without
            them gives the top 3).
        threshold: Every label at or above this probability (``top_k`` then caps).
        output_name: Results file written in the folder (.csv, .json or .jsonl).
        chunk_size: Files per chunk: the unit that runs on a worker and is kept.
        dask_address: Tag the chunks on this Dask cluster (tcp://host:8786); empty: in
            this flow run's own process. The folder must be on storage its workers see.
        tracking_uri: The MLflow store of a ``models:/`` model; empty: MLFLOW_TRACKING_URI.
    """
    files = list_audio_files(folder, output_name)
    package = resolve_tag_model(model, folder, tracking_uri)
    chunks = split_files(files, chunk_size)
    with task_submitter(dask_address) as submit:
        futures = [
            submit(
                chunk_task(folder, i),
                files=files,
                model=package,
                top_k=top_k,
                threshold=threshold,
                index=i,
            )
            for i, files in enumerate(chunks)
        ]
        wait(futures)
        failed = failed_chunks([f.state for f in futures])
        if failed:
            raise ChunksFailed(
                f"{len(failed)} of {len(chunks)} chunks failed (numbers {failed}); re-run the "
                "flow to tag only these (the finished chunks are kept)"
            )
        rows = [row for f in futures for row in f.result()]
    return write_tag_results(folder, output_name, rows)
