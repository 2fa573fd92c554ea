"""Tagging a large folder with the tag flow: 2 local Dask workers against one process.

    python bench/tag_scale.py [--tiny] [--write] [--files N] [--workers N] [--chunk N]

Writes N short clips (1 s, 44.1 kHz, a tone in noise; seeded), builds a package of
five untrained ``demo`` fold models (the weights do not change the cost), and runs
the ``audiotag-tag-audio`` flow on a temporary Prefect server three times:

1. in the flow's own process (its task runner, one chunk at a time, torch on every core);
2. on a local Dask cluster of ``--workers`` worker processes, one thread each, through
   ``dask_address`` (prefect-dask), the chunks' state cleared first;
   (1 and 2 alternated ``--repeats`` times, the fastest of each kept)
3. the same Dask run again: every chunk comes from its persisted result (what a re-run
   after a failure costs for the chunks that had finished).

Prints the wall times side by side and the ratio one process / Dask, and checks
that the merged outputs are the same rows. ``--tiny``: a few files on the debug
preset's single fold, seconds long (tests/test_bench.py runs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from benchlib import best_of, write_section

from audiotag.config import load_config
from audiotag.inference.predict import save_model
from audiotag.inference.tagging import write_package
from audiotag.steps.workspace import TagFolder
from audiotag.training.batches import Normalizer
from audiotag.training.models import build_model

warnings.filterwarnings("ignore", category=FutureWarning)
VOCAB = tuple(f"label-{i}" for i in range(80))


def build_package(root: Path, preset: str, folds: int) -> Path:
    """``folds`` untrained fold models of ``preset`` in a model package."""
    config = load_config(preset)
    size = config.last_stage.cycles[-1].size
    files = []
    for k in range(folds):
        torch.manual_seed(k)
        model = build_model(config.model, len(VOCAB))
        path = root / f"fold-{k + 1}" / "model.pt"
        path.parent.mkdir(parents=True)
        save_model(path, model, VOCAB, config, Normalizer(-45.0, 18.0, 60.0), size, "curated", k)
        files.append(path)
    return write_package(files, root / "model", config.eval)


def write_clips(folder: Path, n: int, seconds: float = 1.0, sr: int = 44100) -> float:
    """``n`` clips of a random tone in noise, 100 per subfolder; their total seconds."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        y = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 8000) * t) + rng.normal(0, 0.02, t.size)
        path = folder / f"part-{i // 100:03d}" / f"clip-{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
    return n * seconds


def run_flow(folder: Path, package: Path, chunk: int, dask_address: str | None) -> float:
    from flows.tag import tag_audio_flow

    t0 = time.perf_counter()
    tag_audio_flow(
        folder=str(folder),
        model=str(package),
        output_name="tags.jsonl",
        chunk_size=chunk,
        dask_address=dask_address,
    )
    return time.perf_counter() - t0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--chunk", type=int, default=100, help="files per chunk")
    parser.add_argument("--repeats", type=int, default=2, help="passes of each; the fastest")
    args = parser.parse_args()
    files, chunk, preset, folds = args.files, args.chunk, "demo", 5
    if args.tiny:
        files, chunk, preset, folds, args.repeats = 12, 4, "debug", 1, 1

    from benchlib import prefect_sandbox
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "inbox"
        audio_s = write_clips(folder, files)
        package = build_package(tmp / "package", preset, folds)
        state = TagFolder.at(folder).state
        load_before = load()
        ones, dasks = [], []
        with prefect_sandbox(tmp):
            # The workers are processes: they find the temporary server by the variable.
            os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
            with LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster:
                # Alternated, the fastest of each kept: others' load on a shared machine
                # falls on both (the first Dask pass also starts its workers' imports).
                for _ in range(args.repeats):
                    shutil.rmtree(state, ignore_errors=True)  # no chunk from an earlier run
                    ones.append(run_flow(folder, package, chunk, None))
                    here = (folder / "tags.jsonl").read_text()
                    shutil.rmtree(state)
                    dasks.append(run_flow(folder, package, chunk, cluster.scheduler_address))
                    on_dask = (folder / "tags.jsonl").read_text()
                cached = run_flow(folder, package, chunk, cluster.scheduler_address)
        one, dask = best_of(ones), best_of(dasks)
        load_after = load()

    same = here == on_dask
    chunks = -(-files // chunk)
    lines = [
        f"Package: {folds} untrained `{preset}` fold model(s); {files} clips of 1 s "
        f"(44.1 kHz, 16-bit), {chunks} chunks of {chunk}; the `audiotag-tag-audio` flow on a "
        f"temporary Prefect server. Load average before {load_before}, after {load_after} "
        "(a shared machine).",
        "",
        "| run | wall s | audio s per wall s | files/s |",
        "|---|---|---|---|",
        f"| one process (the flow's runner, torch on {torch.get_num_threads()} threads) "
        f"| {one:.1f} | {audio_s / one:.0f} | {files / one:.1f} |",
        f"| {args.workers} local Dask workers x 1 thread (dask_address) "
        f"| {dask:.1f} | {audio_s / dask:.0f} | {files / dask:.1f} |",
        f"| the Dask run again, every chunk persisted | {cached:.1f} | | |",
        "",
        f"Every pass (s): one process {', '.join(f'{x:.1f}' for x in ones)}; "
        f"Dask {', '.join(f'{x:.1f}' for x in dasks)}.",
        "",
        f"One process / Dask: **{one / dask:.2f}x**; a re-run of finished chunks: "
        f"{cached / dask:.2f} of the Dask run. Merged outputs identical: "
        f"{'yes' if same else 'NO'}.",
    ]
    print("\n".join(lines))
    if not same:
        raise SystemExit("the Dask run's rows differ from the one-process run's")
    if args.write:
        write_section("tag_scale.py", "\n".join(lines))


if __name__ == "__main__":
    main()
