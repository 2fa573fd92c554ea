"""Real recordings the recipe was never tuned on: 48 drum one-shots, 6 classes, 8 kits."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from audiotag.config import TrainOptions
from audiotag.metrics import lwlrap
from flows.cli import main

pytestmark = pytest.mark.slow

# Random scores on a single-label, 6-class problem: the true label's expected
# precision is E[1/rank] = (1 + 1/2 + ... + 1/6) / 6.
CHANCE = sum(1 / r for r in range(1, 7)) / 6  # 0.408
FOLDS = 2


def test_trains_on_real_drums_and_tags_held_out_clips_above_chance(
    drums_dir: Path, isolated_env: Path
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.train import train_flow

    data = isolated_env / "drums"
    (data / "train_curated").mkdir(parents=True)
    with (drums_dir / "labels.csv").open() as f, (data / "train_curated.csv").open("w") as out:
        writer = csv.writer(out)
        writer.writerow(["fname", "labels"])
        for row in csv.DictReader(f):
            shutil.copy(drums_dir / row["fname"], data / "train_curated" / row["fname"])
            writer.writerow([row["fname"], row["labels"]])
    workdir = isolated_env / "work"
    with prefect_test_harness(server_startup_timeout=120):
        # The demo preset's recipe as a new user would run it, with 2 folds (the form's
        # Folds field) instead of 5, so that the suite keeps within its time: each model
        # learns from 24 recordings, 4 per class, and tags the other 24.
        summary = train_flow(
            source=str(data),
            workdir=str(workdir),
            preset="demo",
            options=TrainOptions(n_folds=FOLDS),
        )
    assert summary["submission"] is None and summary["test_lwlrap"] is None

    folds = pq.read_table(workdir / "folds.parquet").to_pylist()
    vocab = ("Bass_drum", "Clapping", "Cymbal", "Hi-hat", "Snare_drum", "Tom-tom")
    labels = {r["fname"]: r["labels"] for r in csv.DictReader((data / "train_curated.csv").open())}
    truth, scores = [], []
    for k in range(FOLDS):
        held = [data / "train_curated" / r["fname"] for r in folds if r["fold"] == k]
        model = next(workdir.glob(f"models/curated-*/fold-{k + 1}/model.pt"))
        out = isolated_env / f"tags-{k}.jsonl"
        argv = ["tag", *map(str, held), "--model", str(model), "--all", "--format", "jsonl"]
        assert main([*argv, "--output", str(out)]) == 0
        for line in out.read_text().splitlines():
            row = json.loads(line)
            probs = {t["label"]: t["probability"] for t in row["tags"]}
            scores.append([probs[v] for v in vocab])
            truth.append([v == labels[Path(row["path"]).name] for v in vocab])
    score = lwlrap(np.array(truth), np.array(scores))
    assert len(truth) == 48
    print(f"drums: held-out lwlrap {score:.3f}, chance {CHANCE:.3f}")
    # Measured on the development machine: 0.702 with 2 folds (0.725 with 3, 0.755 with
    # 5; 0.60-0.69 with 5 before a stage trained from scratch got its 400 steps). A
    # pipeline that learns nothing scores about chance; the margin allows for other
    # CPUs' arithmetic on models that learn from 24 clips.
    assert score > CHANCE + 0.2, f"held-out lwlrap {score:.3f} vs chance {CHANCE:.3f}"
