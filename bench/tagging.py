"""Tagging throughput of the 5-model ensemble on CPU, and the share of time outside the models.

    python bench/tagging.py [--tiny] [--write] [--preset demo|reference] [--profile]
    python bench/tagging.py --memory [--tiny] [--write]

Builds a model package as `audiotag run` writes one (five fold models of the
preset, untrained: the weights do not change the cost) and tags the demo
dataset's test and curated clips with ``audiotag.inference.tagging.tag_files``, as
``audiotag tag`` does (``eval.tta`` augmented passes per model, as trained).

Throughput is audio seconds (whole files) per wall second. The time inside the
models is measured by forward hooks on each fold model (start in a pre-hook,
stop in a hook, summed); everything else (reading, silence removal, log-mel,
window gathering, normalisation, TTA augmentation, pooling, ensembling) is the
share outside the models. Target: outside share <= 20%. ``--profile`` prints a
cProfile summary of one tagging pass (the functions with the most own time).

``--memory``: peak RSS of tagging one long file, a 10-minute and a 2-hour one (the
stereo 16-bit 44.1 kHz noise bursts of `bench/long_file.py`, written block by block),
each in a child process of its own (``ru_maxrss``), with a one-model demo package and
time segments asked for. The file is decoded, featurised and predicted in blocks, so the
target is: the 2-hour peak at most 20% above the 10-minute one. ``--tiny``: 6 s and 18 s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from benchlib import machine, prepare_demo, write_section

from audiotag.config import load_config
from audiotag.data.layout import read_vocabulary
from audiotag.inference.predict import save_model
from audiotag.inference.tagging import Ensemble, tag_files, write_package
from audiotag.training.batches import Normalizer
from audiotag.training.models import build_model

warnings.filterwarnings("ignore", category=FutureWarning)


def build_package(root: Path, preset: str, vocab: tuple[str, ...], folds: int = 5) -> Path:
    """Five untrained fold models of ``preset`` in a model package."""
    config = load_config(preset)
    size = config.stage("curated").cycles[-1].size
    files = []
    for k in range(folds):
        torch.manual_seed(k)
        model = build_model(config.model, len(vocab))
        path = root / f"fold-{k + 1}" / "model.pt"
        path.parent.mkdir(parents=True)
        save_model(path, model, vocab, config, Normalizer(-45.0, 18.0, 60.0), size, "curated", k)
        files.append(path)
    return write_package(files, root / "model", config.eval)


class ForwardClock:
    """Sums the wall time of every forward call of the ensemble's models."""

    def __init__(self, ens: Ensemble) -> None:
        self.seconds, self.calls, self._t0 = 0.0, 0, 0.0
        for m in ens.models:
            m.model.register_forward_pre_hook(self._start)
            m.model.register_forward_hook(self._stop)

    def _start(self, *_: object) -> None:
        self._t0 = time.perf_counter()

    def _stop(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def tag_all(ens: Ensemble, files: list[Path]) -> int:
    return sum(1 for t in tag_files(ens, files, top_k=3) if t.error is None)


def measure_memory(tiny: bool, write: bool) -> None:
    """Peak RSS of tagging a 10-minute and a 2-hour file (``--memory``)."""
    from long_file import build_package as build_one_model
    from long_file import measure, write_long_wav

    lengths = (0.1, 0.3) if tiny else (10.0, 120.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tag-memory-") as tmp:
        work = Path(tmp)
        build_one_model(work)
        empty, _ = measure("empty", work / "none.wav", work)
        for minutes in lengths:
            wav = write_long_wav(work / f"{minutes:g}min.wav", minutes)
            peak, wall = measure("tagging-segments", wav, work)
            rows.append((minutes, wav.stat().st_size / 2**20, peak, wall))
            print(f"{minutes:g} min: peak RSS {peak:.0f} MiB, {wall:.0f} s", flush=True)
            wav.unlink()
    (short, _, low, _), (long, _, high, _) = rows
    apart = high / low - 1
    verdict = "met" if apart <= 0.2 else "NOT met"
    lines = [
        "Tagging one long file (stereo 16-bit 44.1 kHz noise bursts, demo mel), one untrained "
        "demo model, TTA as the demo preset, segments asked for; each in a child process, "
        f"peak RSS its `ru_maxrss`. The empty run (imports only): {empty:.0f} MiB.",
        "",
        "| file | MiB on disk | peak RSS MiB | above empty MiB | wall s |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {m:g} min | {mib:.0f} | {p:.0f} | {p - empty:+.0f} | {w:.0f} |" for m, mib, p, w in rows
    ]
    lines += [
        "",
        f"{long:g} min vs {short:g} min: peak RSS **{100 * apart:+.1f}%** (target <= +20%: "
        f"{verdict}).",
    ]
    print("\n".join(lines))
    print(f"device: {machine()}")
    print(f"ratio: {high / low:.2f}x peak RSS for {long / short:.0f}x the audio")
    if write and not tiny:
        write_section("tagging.py --memory", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--memory", action="store_true", help="peak RSS, 10 min vs 2 h file")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--preset", default="demo", choices=["demo", "reference"])
    parser.add_argument("--repeats", type=int, default=2, help="tagging passes; the fastest")
    parser.add_argument("--profile", action="store_true", help="cProfile one pass")
    args = parser.parse_args()
    if args.memory:
        measure_memory(args.tiny, args.write)
        return
    scale, repeats = (0.03, 1) if args.tiny else (1.0, args.repeats)

    with tempfile.TemporaryDirectory(prefix="bench-tagging-") as tmp:
        tmp_path = Path(tmp)
        data_dir, rows = prepare_demo(tmp_path, scale)
        rows = [r for r in rows if r["subset"] in ("test", "curated")]
        if args.preset == "reference" and not args.tiny:
            rows = rows[:60]  # xresnet50 on 2 cores: a minute's worth
        files = [data_dir / r["path"] for r in rows]
        audio_s = sum(r["duration"] for r in rows)
        package = build_package(tmp_path / "package", args.preset, read_vocabulary(data_dir))
        ens = Ensemble(package)
        clock = ForwardClock(ens)
        tag_all(ens, files[:4])  # warm-up
        walls, inside = [], []
        for _ in range(repeats):
            clock.reset()
            t0 = time.perf_counter()
            tagged = tag_all(ens, files)
            walls.append(time.perf_counter() - t0)
            inside.append(clock.seconds)
        best = int(np.argmin(walls))
        wall, model_s = walls[best], inside[best]
        profile = ""
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            tag_all(ens, files)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
            profile = out.getvalue()
            print(profile)

    config = load_config(args.preset)
    share = 1.0 - model_s / wall
    lines = [
        f"Package: 5 untrained `{args.preset}` fold models ({config.model.arch} x"
        f"{config.model.widen}, tta {config.eval.tta}, {config.crop_frames}-frame windows, "
        f"overlap {config.eval.window_overlap}); {tagged} files (demo test + curated clips), "
        f"{audio_s:.0f} s of audio; fastest of {repeats} passes.",
        "",
        "| files | audio s | wall s | audio s per wall s | files/s | in models s "
        "| outside models |",
        "|---|---|---|---|---|---|---|",
        f"| {tagged} | {audio_s:.0f} | {wall:.2f} | {audio_s / wall:.0f} | {tagged / wall:.1f} "
        f"| {model_s:.2f} | **{100 * share:.1f}%** (target <= 20%) |",
    ]
    print("\n".join(lines))
    if args.write and not args.tiny:
        write_section(f"tagging.py --preset {args.preset}", "\n".join(lines))
    print(f"device: {machine()}")
    print(
        f"ratio: {audio_s / wall:.0f} audio s per wall s; outside the models "
        f"{100 * share:.1f}% of wall (target <= 20%)"
    )


if __name__ == "__main__":
    main()
