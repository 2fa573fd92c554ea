"""Peak memory (RSS) of one long file's metadata, features and tagging, above an empty run.

    python bench/long_file.py [--tiny] [--write] [--minutes 120]

Writes a 2-hour (``--minutes``) stereo 16-bit 44.1 kHz WAV block by block (never held
in memory): noise bursts of changing loudness between silences. Each stage then runs in
a child process of its own, and the child's peak resident set (``ru_maxrss`` from
``os.wait4``, the kernel's high-water mark) is the figure:

- ``empty``: the same imports (torch, audiotag), no work: the floor the others stand on;
- ``metadata``: `describe_file` (sha1, header, length, peak, RMS, silence intervals);
- ``features``: the feature store built from that row (`build_feature_store`, the
  silence-cut, resampled log-mel of the demo settings);
- ``tagging``: `tag_files` with a one-model package of the demo preset (untrained
  weights: memory does not depend on them), the silences found again, TTA as trained.

Target: each stage's peak at most 1.5 GB above the empty run's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
TARGET_MIB = 1.5 * 1024


def write_long_wav(path: Path, minutes: float, block: int = 1 << 20) -> Path:
    """A stereo 16-bit WAV of ``minutes``, written ``block`` frames at a time."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    levels = np.array([0.8, 0.0, 0.3, 0.01, 0.5, 0.0], dtype=np.float32)
    total = int(minutes * 60 * SR)
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            # A loudness per 0.5 s: the silence intervals change every second.
            idx = (np.arange(start, start + n) // (SR // 2)) % len(levels)
            noise = rng.standard_normal((n, 2), dtype=np.float32) * 0.3
            f.write(np.clip(noise * levels[idx][:, None], -1, 1))
    return path


def child(stage: str, wav: str, out: str) -> None:
    """One stage, in the measured process."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch  # noqa: F401  (every stage's floor: the empty run imports it too)

    from audiotag.config import load_config
    from audiotag.data.metadata import describe_file
    from audiotag.features.store import build_feature_store
    from audiotag.inference.tagging import Ensemble, tag_files

    path, work = Path(wav), Path(out)
    mel = load_config("demo").mel
    if stage == "metadata":
        row = describe_file(path.parent.parent, path.name, "curated", ["Bark"], mel.silence_top_db)
        (work / "row.json").write_text(json.dumps(row))
    elif stage == "features":
        row = json.loads((work / "row.json").read_text())
        build_feature_store([row], path.parent.parent, mel, work / "store")
    elif stage == "tagging":
        (tags,) = tag_files(Ensemble(work / "model"), [path])
        assert tags.error is None, tags.error
    elif stage == "tagging-segments":  # bench/tagging.py --memory
        from audiotag.config import SegmentSettings

        (tags,) = tag_files(Ensemble(work / "model"), [path], segments=SegmentSettings())
        assert tags.error is None, tags.error


def build_package(work: Path) -> None:
    """A one-model package of the demo preset, untrained."""
    import torch

    from audiotag.config import load_config
    from audiotag.inference.predict import save_model
    from audiotag.inference.tagging import write_package
    from audiotag.training.batches import Normalizer
    from audiotag.training.models import build_model

    config = load_config("demo")
    torch.manual_seed(0)
    model = build_model(config.model, 2)
    size = config.stage("curated").cycles[-1].size
    fold = work / "fold-1" / "model.pt"
    fold.parent.mkdir(parents=True)
    norm = Normalizer(-45.0, 18.0, 60.0)
    save_model(fold, model, ("Bark", "Meow"), config, norm, size, "curated", 0)
    write_package([fold], work / "model", config.eval)


def measure(stage: str, wav: Path, work: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one stage's child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", stage, str(wav), str(work)])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed ({proc.returncode})")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0  # ru_maxrss is in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="an 18-second file (a smoke run)")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--minutes", type=float, default=120.0, help="the file's length")
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "WAV", "WORK"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from benchlib import machine, write_section

    minutes = 0.3 if args.tiny else args.minutes
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        work = Path(tmp)
        wav = work / "data" / "train_curated" / "long.wav"
        wav.parent.mkdir(parents=True)
        t0 = time.perf_counter()
        write_long_wav(wav, minutes)
        mib = wav.stat().st_size / 2**20
        print(f"wrote {minutes:g} min ({mib:.0f} MiB) in {time.perf_counter() - t0:.0f} s")
        build_package(work)
        for stage in ("empty", "metadata", "features", "tagging"):
            peak, wall = measure(stage, wav, work)
            rows.append((stage, peak, wall))
            print(f"{stage}: peak RSS {peak:.0f} MiB, {wall:.0f} s", flush=True)
        store = sum(p.stat().st_size for p in (work / "store").glob("*.f32")) / 2**20
    floor = rows[0][1]
    lines = [
        f"One {minutes:.3g}-minute stereo 16-bit 44.1 kHz WAV ({mib:.0f} MiB), demo mel "
        f"settings; its log-mel in the store: {store:.0f} MiB. Each stage in a child "
        "process; peak RSS is the child's `ru_maxrss` (os.wait4). The empty run imports "
        "torch and audiotag and does nothing. Tagging: one untrained demo model, TTA as "
        "the demo preset.",
        "",
        "| stage | peak RSS MiB | above empty MiB | wall s |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s} | {p:.0f} | {p - floor:+.0f} | {w:.0f} |" for s, p, w in rows]
    worst = max(p - floor for _, p, _ in rows[1:])
    verdict = "met" if worst <= TARGET_MIB else "NOT met"
    lines += [
        "",
        f"Largest rise above the empty run: **{worst:.0f} MiB** (target <= 1536: {verdict}).",
    ]
    print("\n".join(lines))
    print(f"device: {machine()}")
    if args.write and not args.tiny:
        write_section("long_file.py", "\n".join(lines))


if __name__ == "__main__":
    main()
