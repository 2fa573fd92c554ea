"""Where mapped tasks run: the flow's own task runner, or an existing Dask cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect import Task
from prefect.futures import PrefectFuture


@contextmanager
def task_submitter(
    dask_address: str | None = None, resources: dict[str, float] | None = None
) -> Iterator[Callable[..., PrefectFuture]]:
    """``submit(task, **parameters)``: to the flow's task runner, or, with an address, to
    that Dask cluster through prefect-dask, each task asking for ``resources`` (Dask
    worker resources, e.g. ``{"GPU": 1}``)."""
    if not dask_address:

        def submit_here(task: Task, **parameters: Any) -> PrefectFuture:
            return task.submit(**parameters)

        yield submit_here
        return

    import dask
    from prefect_dask import DaskTaskRunner

    with DaskTaskRunner(address=dask_address) as runner:

        def submit_dask(task: Task, **parameters: Any) -> PrefectFuture:
            with dask.annotate(resources=resources or {}):
                return runner.submit(task, parameters=parameters)

        yield submit_dask
