"""Tagging tasks: tag a folder with a trained ensemble and write the results beside it."""

from __future__ import annotations

import csv
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from audiotag.inference.tagging import Ensemble, find_audio, tag_files
from audiotag.storage import safe_csv_cell, write_atomic


@task
def tag_folder(
    folder: str, model: str, top_k: int, threshold: float | None, output_name: str
) -> str:
    """Tags every audio file under ``folder``; writes ``<folder>/<output_name>`` (CSV)."""
    logger = get_run_logger()
    root = Path(folder)
    files = find_audio([root])
    ens = Ensemble(Path(model))
    logger.info("tagging %d files in %s with %s", len(files), root, ens.path)
    rows = list(tag_files(ens, files, top_k, threshold))
    out = root / output_name

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "tags", "error"])
            for r in rows:
                rel = Path(r.path).relative_to(root)
                tags = ";".join(f"{label}:{p:.4f}" for label, p in r.tags)
                writer.writerow([safe_csv_cell(str(rel)), safe_csv_cell(tags), r.error or ""])

    write_atomic(out, write)
    failed = [r for r in rows if r.error]
    if failed:
        logger.warning("%d files could not be tagged (see the error column)", len(failed))
    create_table_artifact(
        [
            {
                "file": Path(r.path).name,
                "tags": ";".join(lb for lb, _ in r.tags),
                "error": r.error or "",
            }
            for r in rows[:500]
        ],
        key="tags",
        description=f"tags of {len(rows)} files in {root}",
    )
    return str(out)
