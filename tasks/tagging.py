"""Tagging tasks: a folder's audio split into chunks, each tagged and persisted, then merged.

Each chunk's rows are a persisted task result keyed by its files' identity (path,
size, modification time) and the model package's digest, so a re-run after a
failure (or a kill) tags only the chunks that did not finish, on the flow's task
runner or an existing Dask cluster.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE, TASK_SOURCE, CacheKeyFnPolicy
from prefect.context import TaskRunContext

from audiotag.config import settings_hash
from audiotag.errors import UsageError
from audiotag.inference.tagging import (
    Ensemble,
    find_audio,
    package_digest,
    resolve_package,
    tag_files,
    tag_record,
)
from audiotag.steps.workspace import TagFolder
from audiotag.storage import file_digest, safe_csv_cell, write_atomic

# A test (and an operator) can make one chunk fail, e.g. "2" (1-based).
FAIL_CHUNK_ENV = "AUDIOTAG_FAIL_TAG_CHUNK"
REGISTRY_SCHEMES = ("models:/", "runs:/")


class NoAudioError(ValueError, UsageError):
    """The folder holds no file named like audio: nothing to tag is an error, not silence."""


class ChunksFailed(RuntimeError, UsageError):
    """Some chunks could not be tagged; the finished ones are persisted for a re-run."""


@dataclass(frozen=True)
class TagModel:
    """The model package every chunk loads, and what identifies it in their cache keys."""

    path: str  # a local package directory or model file
    digest: str  # its files' digest: a new version of the model, new keys
    source: str  # what was asked for, with an alias resolved (models:/birds/3)


def _retry_unless_final(task, task_run, state) -> bool:  # noqa: ANN001 - prefect's hook
    """A tracking server that dropped a connection may answer; a model that is not
    there, or a cause the user must fix, will not."""
    try:
        state.result()
    except (UsageError, FileNotFoundError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - anything else is worth another try
        return True
    return False


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_unless_final)
def resolve_tag_model(model: str, folder: str, tracking_uri: str | None = None) -> TagModel:
    """A model package path as it is; ``models:/NAME@ALIAS`` (or ``runs:/``) resolved to
    its version now and downloaded once into the folder's tagging state."""
    if not model.startswith(REGISTRY_SCHEMES):
        path = resolve_package(Path(model))
        return TagModel(str(path), _digest(path), model)
    from audiotag.tracking.registry import download_package, resolve_model_uri
    from audiotag.tracking.store import model_store_uri

    uri = model_store_uri(model, tracking_uri)
    resolved = resolve_model_uri(model, uri)
    dst = TagFolder.at(folder).model_dir(settings_hash(uri, resolved))
    path = download_package(resolved, uri, dst)
    get_run_logger().info("%s is %s", model, resolved)
    return TagModel(str(path), _digest(path), resolved)


def _digest(path: Path) -> str:
    return file_digest(path) if path.is_file() else package_digest(path)


@task(cache_policy=NO_CACHE)
def list_audio_files(folder: str, output_name: str) -> list[str]:
    """Every file named like audio under ``folder`` (recursive, stable order), leaving out
    the flow's own state and results.

    Raises:
        NoAudioError: there is none.
    """
    tf = TagFolder.at(folder)
    if not tf.root.is_dir():
        raise NoAudioError(f"{tf.root}: not a folder")
    files = [
        str(p)
        for p in find_audio([tf.root])
        if tf.state not in p.parents and p != tf.output(output_name)
    ]
    if not files:
        raise NoAudioError(f"{tf.root}: no audio files to tag")
    return files


def split_files(files: list[str], size: int) -> list[list[str]]:
    """``files`` in consecutive chunks of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValueError(f"chunk size {size}: must be at least 1")
    return [files[i : i + size] for i in range(0, len(files), size)]


def _identity(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError as err:  # a broken link or a file gone: its error row is cached too
        return [path, err.strerror]
    return [path, st.st_size, st.st_mtime_ns]


def chunk_cache_key(ctx: TaskRunContext | None, parameters: dict[str, Any]) -> str:
    """The chunk's files (path, size, modification time), the model's digest and how
    labels are chosen: a changed file or a new model version tags the chunk again."""
    model: TagModel = parameters["model"]
    files = json.dumps([_identity(f) for f in parameters["files"]])
    return settings_hash(model.digest, parameters["top_k"], parameters["threshold"], files)


CHUNK_CACHE = CacheKeyFnPolicy(cache_key_fn=chunk_cache_key) + TASK_SOURCE


@lru_cache(maxsize=2)
def _loaded(path: str, digest: str) -> tuple[Ensemble, threading.Lock]:
    """One ensemble per process (a Dask worker tags many chunks), and a lock: the
    thread that predicts owns it."""
    return Ensemble(Path(path)), threading.Lock()


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN is not JSON
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return _plain(value.item()) if hasattr(value, "item") else str(value)  # numpy scalars


def as_row(row: Any) -> dict[str, Any]:
    """A tagging row (a dict or a dataclass) as a JSON-able dict, without NaN."""
    return _plain(dict(row) if isinstance(row, dict) else dataclasses.asdict(row))


@task(persist_result=True)
def tag_chunk(
    files: list[str], model: TagModel, top_k: int | None, threshold: float | None, index: int
) -> list[dict[str, Any]]:
    """The tagging rows of one chunk of files, in order; an unreadable file gets an error
    row and never stops the chunk."""
    if os.environ.get(FAIL_CHUNK_ENV) == str(index + 1):
        raise RuntimeError(f"chunk {index + 1} made to fail by {FAIL_CHUNK_ENV}")
    ens, lock = _loaded(model.path, model.digest)
    with lock:
        # As `audiotag tag`: each label's calibrated threshold unless told otherwise.
        per_class = top_k is None and threshold is None and ens.thresholds is not None
        if top_k is None and threshold is None and not per_class:
            top_k = 3  # a package from before the thresholds
        rows = tag_files(ens, [Path(f) for f in files], top_k, threshold, per_class=per_class)
        return [as_row(tag_record(r)) for r in rows]


def chunk_task(folder: str, index: int) -> Task:
    """The task of chunk ``index``; its cache records and results in the folder's state."""
    tf = TagFolder.at(folder)
    return tag_chunk.with_options(
        task_run_name=f"tag-chunk-{index + 1}",
        cache_policy=CHUNK_CACHE.configure(key_storage=str(tf.cache_keys)),
        result_storage=tf.results,
    )


def _label_pair(item: Any) -> tuple[str, float] | None:
    """``(label, probability)`` of a tag given as a pair or a {label, probability} dict."""
    if isinstance(item, dict) and {"label", "probability"} <= set(item):
        return str(item["label"]), item["probability"]
    if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], item[1]
    return None


def _cell(value: Any) -> str:
    """A CSV cell: tags as ``label:0.1234;label:0.0567``, other lists and dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list):
        pairs = [_label_pair(v) for v in value]
        if all(p is not None and isinstance(p[1], int | float) for p in pairs):
            return ";".join(f"{label}:{p:.4f}" for label, p in pairs)
    return json.dumps(value)


def _render(rows: list[dict[str, Any]], suffix: str) -> str:
    if suffix == ".jsonl":
        return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
    if suffix == ".json":
        return json.dumps(rows, allow_nan=False, indent=1) + "\n"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([safe_csv_cell(_cell(r.get(c))) for c in columns])
    return out.getvalue()


@task(cache_policy=NO_CACHE)
def write_tag_results(folder: str, output_name: str, rows: list[dict[str, Any]]) -> str:
    """Writes every row, paths relative to ``folder``, to ``<folder>/<output_name>`` at
    once (a reader never sees half of it): CSV, or JSON / JSONL by the name's suffix."""
    tf = TagFolder.at(folder)
    rows = [{**r, "path": str(Path(r["path"]).relative_to(tf.root))} for r in rows]
    text = _render(rows, Path(output_name).suffix.lower())
    out = write_atomic(tf.output(output_name), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    failed = sum(bool(r.get("error")) for r in rows)
    logger = get_run_logger()
    logger.info("tagged %d files into %s", len(rows), out)
    if failed:
        logger.warning(
            "%d of %d files could not be tagged (see the error field)", failed, len(rows)
        )
    create_table_artifact(
        [
            {"file": Path(r["path"]).name, **{k: _cell(v) for k, v in r.items() if k != "path"}}
            for r in rows[:500]
        ],
        key="tags",
        description=f"tags of {len(rows)} files in {tf.root}",
    )
    return str(out)


def failed_chunks(states: list[Any]) -> list[int]:
    """The 1-based numbers of the chunks whose state is not completed (cached counts)."""
    return [i + 1 for i, s in enumerate(states) if not s.is_completed()]
