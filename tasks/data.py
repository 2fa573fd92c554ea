"""Data tasks: download, metadata, filtering, folds, features."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from audiotag.config import FoldSettings, TrainConfig
from audiotag.data.filtering import filter_corrupt
from audiotag.data.folds import make_folds
from audiotag.data.layout import formula_labels, outside_vocabulary, read_vocabulary
from audiotag.data.metadata import dataset_fingerprint, extract_metadata
from audiotag.data.report import embed_plots, write_data_report
from audiotag.data.report.markdown import label_notes
from audiotag.features import store as feats
from audiotag.sources.local import prepare_source
from audiotag.steps.dataset import DatasetInfo, build_features
from audiotag.steps.preflight import check_dataset
from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import Tracking, log_artifact, log_dataset, log_images

# The MLflow dataset input's name; its digest is the fingerprint of the kept files.
DATASET_NAME = "training-data"


def _retry_network_only(task, task_run, state) -> bool:  # noqa: ANN001 - prefect's hook
    """Retry a dropped connection; a missing token, unaccepted rules or an offline
    machine (no connection opened at all) will not heal in a minute."""
    from audiotag.sources.kaggle import KaggleNetworkError, KaggleUnreachableError

    try:
        state.result()
    except KaggleUnreachableError:
        return False
    except KaggleNetworkError:
        return True
    except Exception:  # noqa: BLE001 - anything else is final
        return False
    return False


@task(retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=_retry_network_only)
def download_dataset(source: str, workdir: str, seed: int = 0) -> str:
    """Brings the dataset into the FAT2019 layout; returns its directory."""
    ws = Workspace.at(workdir)
    get_run_logger().info("preparing the dataset from %s", source)
    data_dir = prepare_source(
        source, ws.data_dir, demo_dir=ws.demo_source, kaggle_dir=ws.kaggle_source, seed=seed
    )
    get_run_logger().info("dataset ready in %s", data_dir)
    return str(data_dir)


@task
def check_dataset_files(data_dir: str, config: TrainConfig) -> None:
    """Fails before the audio is read when the CSVs cannot train ``config`` (a missing
    column, every label outside the vocabulary, fewer labelled clips than folds)."""
    check_dataset(Path(data_dir), config)


@task
def extract_dataset_metadata(data_dir: str, workdir: str, silence_top_db: float) -> str:
    """Writes metadata.parquet (incremental: unchanged files are not re-read)."""
    ws = Workspace.at(workdir)
    return str(extract_metadata(Path(data_dir), ws.metadata, silence_top_db))


@task
def filter_corrupt_files(
    data_dir: str, workdir: str, metadata: str, tracking: Tracking
) -> DatasetInfo:
    """Drops known-corrupt, unreadable and silent files, recording each with its reason."""
    ws = Workspace.at(workdir)
    kept, rejected = filter_corrupt(Path(metadata), ws.kept, ws.rejected)
    counts = Counter(pq.read_table(ws.kept, columns=["subset"]).column("subset").to_pylist())
    info = DatasetInfo(
        data_dir,
        dataset_fingerprint(ws.kept),
        read_vocabulary(Path(data_dir)),
        kept,
        rejected,
        tuple(sorted(counts.items())),
    )
    logger = get_run_logger()
    logger.info(
        "kept %d files (%s), rejected %d; fingerprint %s; %d labels",
        kept,
        ", ".join(f"{n} {s}" for s, n in info.counts),
        rejected,
        info.fingerprint,
        len(info.vocab),
    )
    rows = pq.read_table(ws.kept, columns=["subset", "fname", "labels"]).to_pylist()
    for note in label_notes(outside_vocabulary(rows, info.vocab), formula_labels(info.vocab)):
        logger.warning("%s", note)
    report_dir = ws.report_dir
    paths = write_data_report(ws.metadata, ws.rejected, report_dir, info.vocab)
    for path in paths:
        log_artifact(tracking, tracking.parent_run_id, path, "data_report")
    run = tracking.parent_run_id
    log_images(tracking, run, [p for p in paths if p.suffix == ".png"], "data_report")
    profile = {"kept": kept, "rejected": rejected, "labels": len(info.vocab), **dict(info.counts)}
    log_dataset(tracking, run, DATASET_NAME, info.fingerprint, data_dir, profile)
    log_artifact(tracking, tracking.parent_run_id, ws.rejected, "data_report")
    create_markdown_artifact(
        embed_plots(paths[0].read_text(), report_dir),  # the UI fetches no files
        key="data-report",
        description="Dataset report: durations, labels, levels, rejects",
    )
    if rejected:
        rows = pq.read_table(ws.rejected).to_pylist()
        create_table_artifact(
            rows[:200],
            key="rejected-files",
            description=f"{rejected} rejected files with their reasons",
        )
    return info


@task
def make_dataset_folds(workdir: str, info: DatasetInfo, settings: FoldSettings) -> str:
    """Writes folds.parquet (same split on every run for the same data and settings)."""
    ws = Workspace.at(workdir)
    return str(make_folds(ws.kept, ws.folds, settings))


@task
def build_feature_store(workdir: str, info: DatasetInfo, config: TrainConfig) -> str:
    """Computes every kept file's log-mel once; cached by fingerprint and mel settings."""
    ws = Workspace.at(workdir)
    get_run_logger().info("feature store: the log-mel of %d files (or the cached one)", info.kept)
    root = build_features(ws, Path(info.data_dir), config, info.fingerprint)
    store = feats.FeatureStore.open(root)
    get_run_logger().info(
        "feature store %s: %d files, %d frames", root, len(store.index), store.data.shape[0]
    )
    return str(root)
