"""The data stages at FAT2019's size (or a fraction of it), on a synthetic dataset.

    python bench/scale.py [--tiny] [--write] [--fraction F] [--preset reference]

Writes a dataset in the competition's layout with FAT2019's counts and duration
distributions: 4,970 curated clips (mean 7.6 s, 0.3-30 s), 19,815 noisy clips
(mean 14.6 s, 1-16 s) and 1,120 test clips (as curated), 44.1 kHz 16-bit mono
WAV, about 29 GB at full size (``--fraction 1``). Each clip is noise at a random
level with, in a third of the clips, silent gaps, so the silence split has work.
Then it runs the flow's data stages, each in a child process, with the same
audiotag calls as the flow's tasks (``tasks/data.py``, without Prefect and MLflow
around them): unpack (the competition zip, stored, when the disk has room for a
second copy; else the directory in place, as a user who unzipped it), metadata,
filtering (with the data report), folds, feature store. Per stage: wall time,
the child's peak RSS (``ru_maxrss``), its audio seconds per wall second, and the
disk and store sizes. Targets at full size on the 2-core machine: the data
stages within 30 minutes, peak RSS within 4 GB, no stage whose cost grows faster
than the data (compare two fractions).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
from benchlib import machine, write_section

SR = 44100
# (subset, folder, clips, mean s, min s, max s) at full size.
SUBSETS = (
    ("curated", "train_curated", 4970, 7.6, 0.3, 30.0),
    ("noisy", "train_noisy", 19815, 14.6, 1.0, 16.0),
    ("test", "test", 1120, 7.6, 0.3, 30.0),
)
STAGES = ("unpack", "metadata", "filtering", "folds", "features")
# Bytes per second of 16-bit mono at 44.1 kHz, and a WAV header.
BYTES_PER_S, HEADER = 2 * SR, 44


def draw_durations(
    rng: np.random.Generator, n: int, mean: float, lo: float, hi: float
) -> np.ndarray:
    """``n`` durations in [lo, hi] with the given mean: FAT2019's shapes.

    The noisy clips are mostly 15-16 s (Freesound excerpts cut at 16 s), a few
    shorter; the curated ones are log-normal with a long tail to 30 s.
    """
    if hi <= 16.0:
        # A share p of clips in [hi - 1, hi], the rest uniform below, meeting the mean.
        p = (mean - (lo + hi - 1) / 2) / ((hi - 0.5) - (lo + hi - 1) / 2)
        top = rng.random(n) < p
        d = np.where(top, rng.uniform(hi - 1, hi, n), rng.uniform(lo, hi - 1, n))
    else:
        d = rng.lognormal(np.log(mean) - 0.32, 0.8, n)
        for _ in range(20):  # rescale until the clipped mean is the target's
            d = np.clip(d * mean / np.clip(d, lo, hi).mean(), lo, hi)
    return np.clip(d, lo, hi)


def render_clip(rng: np.random.Generator, bank: np.ndarray, seconds: float) -> np.ndarray:
    """Noise from ``bank`` at a random level; a third of the clips with silent gaps."""
    n = max(1, int(seconds * SR))
    start = int(rng.integers(0, len(bank) - n)) if n < len(bank) else 0
    x = np.resize(bank[start:], n) if n >= len(bank) else bank[start : start + n]
    x = x * float(10 ** (rng.uniform(-40, -8) / 20))
    if rng.random() < 1 / 3 and n > SR:
        for _ in range(int(rng.integers(1, 4))):
            g0 = int(rng.integers(0, n - SR // 4))
            x[g0 : g0 + int(rng.integers(SR // 10, SR // 2))] = 0.0
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def plan(fraction: float, seed: int = 0) -> dict[str, tuple[str, np.ndarray]]:
    """Each subset's folder and clip durations at ``fraction`` of full size."""
    rng = np.random.default_rng(seed)
    out = {}
    for subset, folder, n, mean, lo, hi in SUBSETS:
        k = max(6 if subset != "test" else 2, round(n * fraction))
        out[subset] = (folder, draw_durations(rng, k, mean, lo, hi))
    return out


def write_dataset(root: Path, layout: dict[str, tuple[str, np.ndarray]], seed: int = 0) -> None:
    """The competition layout under ``root``: the CSVs and every subset's WAVs."""
    from audiotag.sources.demo import DEMO_CLASSES

    rng = np.random.default_rng(seed + 1)
    bank = rng.standard_normal(60 * SR).astype(np.float32) * 0.3
    classes = sorted(DEMO_CLASSES)
    root.mkdir(parents=True, exist_ok=True)
    for subset, (folder, durations) in layout.items():
        (root / folder).mkdir(exist_ok=True)
        names = [f"{subset[0]}{i:07x}.wav" for i in range(len(durations))]
        for name, seconds in zip(names, durations, strict=True):
            sf.write(root / folder / name, render_clip(rng, bank, float(seconds)), SR, "PCM_16")
        if subset == "test":
            with (root / "sample_submission.csv").open("w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["fname", *classes])
                w.writerows([name, *([0] * len(classes))] for name in names)
        else:
            with (root / f"{folder}.csv").open("w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["fname", "labels"])
                for name in names:
                    k = 1 + int(rng.random() < 0.2)
                    picked = rng.choice(len(classes), size=k, replace=False)
                    w.writerow([name, ",".join(sorted(classes[int(i)] for i in picked))])


def write_archive(root: Path, archive: Path) -> None:
    """The competition zip of ``root``: CSVs, and one stored inner zip per subset."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED, allowZip64=True) as outer:
        for csv_path in sorted(root.glob("*.csv")):
            outer.write(csv_path, csv_path.name)
        for _, folder, *_ in SUBSETS:
            with outer.open(f"{folder}.zip", "w", force_zip64=True) as member:
                with zipfile.ZipFile(member, "w", zipfile.ZIP_STORED, allowZip64=True) as inner:
                    for wav in sorted((root / folder).glob("*.wav")):
                        inner.write(wav, wav.name)


def run_stage(stage: str, source: str, workdir: str, preset: str) -> dict:
    """One data stage, as the flow's task runs it (in the child process)."""
    import pyarrow.parquet as pq

    from audiotag.config import load_config
    from audiotag.data.filtering import filter_corrupt
    from audiotag.data.folds import make_folds
    from audiotag.data.layout import read_vocabulary
    from audiotag.data.metadata import dataset_fingerprint, extract_metadata
    from audiotag.data.report import write_data_report
    from audiotag.devices import flush_denormals
    from audiotag.sources.local import prepare_source
    from audiotag.steps.dataset import build_features
    from audiotag.steps.preflight import check_dataset
    from audiotag.steps.workspace import Workspace

    flush_denormals()
    config, ws = load_config(preset), Workspace.at(workdir)
    data_dir = ws.data_dir if source.endswith(".zip") else Path(source)
    if stage == "empty":  # the imports alone: what every child pays before its stage
        return {}
    if stage == "unpack":  # download_dataset + check_dataset_files
        data_dir = prepare_source(
            source, ws.data_dir, demo_dir=ws.demo_source, kaggle_dir=ws.kaggle_source
        )
        check_dataset(data_dir, config)
    elif stage == "metadata":
        extract_metadata(data_dir, ws.metadata, config.mel.silence_top_db)
    elif stage == "filtering":  # filter_corrupt_files, without its Prefect artifacts
        kept, rejected = filter_corrupt(ws.metadata, ws.kept, ws.rejected)
        write_data_report(ws.metadata, ws.rejected, ws.report_dir, read_vocabulary(data_dir))
        return {"kept": kept, "rejected": rejected}
    elif stage == "folds":
        make_folds(ws.kept, ws.folds, config.folds)
    elif stage == "features":
        root = build_features(ws, data_dir, config, dataset_fingerprint(ws.kept))
        size = sum(p.stat().st_size for p in root.iterdir())
        frames = pq.read_table(root / "index.parquet", columns=["frames"]).column("frames")
        return {"store_bytes": size, "frames": int(sum(frames.to_pylist()))}
    return {}


def measure_stage(
    stage: str, source: Path, workdir: Path, preset: str, in_process: bool = False
) -> dict:
    """Runs ``stage`` in a child process: wall s, the child's peak RSS, what it returned.

    ``in_process``: here instead (``--tiny``: no child's start-up), the peak RSS then
    being this process's so far.
    """
    if in_process:
        t0 = time.perf_counter()
        got = run_stage(stage, str(source), str(workdir), preset)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        wall = time.perf_counter() - t0
        return {"wall": wall, "stage_s": wall, "rss_mib": rss, **got}
    out = workdir.parent / f"{stage}.json"
    cmd = [sys.executable, __file__, "--child", stage, str(source), str(workdir), preset, str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {stage} failed: {' '.join(cmd)}")
    return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, **json.loads(out.read_text())}


def du(path: Path) -> int:
    """Bytes of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--fraction", type=float, default=0.02, help="of FAT2019's size")
    parser.add_argument("--preset", default="reference", help="whose mel settings")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a temp dir)")
    parser.add_argument(
        "--source",
        choices=("auto", "zip", "dir"),
        default="auto",
        help="the competition zip (unpacked by the flow) or the directory in place; auto: "
        "the zip while its two extra copies take at most a quarter of the free disk",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, source, workdir, preset, out = args.child
        import audiotag.steps.dataset  # noqa: F401  (the imports: not the stage's time)

        t0 = time.perf_counter()
        got = run_stage(stage, source, workdir, preset)
        Path(out).write_text(json.dumps({"stage_s": time.perf_counter() - t0, **got}))
        return
    fraction = 0.0005 if args.tiny else args.fraction
    layout = plan(fraction)
    audio_s = sum(float(d.sum()) for _, d in layout.values())
    clips = sum(len(d) for _, d in layout.values())
    wav_bytes = sum(
        float((d * SR).astype(int).sum()) * 2 + HEADER * len(d) for _, d in layout.values()
    )
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free
    # The zip is a second copy of the audio and unpacking makes a third: only with room
    # (the disk is shared).
    archive = args.source == "zip" or (args.source == "auto" and 3.5 * wav_bytes < 0.25 * free)
    print(
        f"data: fraction {fraction:g}: {clips} clips, {audio_s / 3600:.2f} h of audio, "
        f"{wav_bytes / 1e9:.2f} GB of WAV; {'zip' if archive else 'directory'} source; "
        f"{free / 1e9:.0f} GB free in {base}",
        flush=True,
    )
    results: dict[str, dict] = {}
    try:
        t0 = time.perf_counter()
        write_dataset(base / "raw", layout)
        source = base / "raw"
        if archive:
            source = base / "freesound-audio-tagging-2019.zip"
            write_archive(base / "raw", source)
            shutil.rmtree(base / "raw")
        written = time.perf_counter() - t0
        print(f"written in {written:.0f} s", flush=True)
        workdir = base / "work"
        # A child's start-up (imports) is paid once per stage here, once per flow in a
        # flow run: each stage's time is taken in its child after the imports.
        empty = {} if args.tiny else measure_stage("empty", source, workdir, args.preset)
        for stage in STAGES:
            results[stage] = measure_stage(stage, source, workdir, args.preset, args.tiny)
            r = results[stage]
            r["wall"] = r["stage_s"]
            print(f"{stage}: {r['wall']:.1f} s, peak RSS {r['rss_mib']:.0f} MiB", flush=True)
        disk = du(base)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    total = sum(r["wall"] for r in results.values())
    store = results["features"]
    lines = [
        f"Synthetic FAT2019 at fraction {fraction:g} (`python bench/scale.py --fraction "
        f"{fraction:g}`): {clips} clips, {audio_s / 3600:.1f} h of audio, "
        f"{wav_bytes / 1e9:.2f} GB of WAV, source {'a stored zip' if archive else 'a directory'}; "
        f"{args.preset} mel; written in {written:.0f} s. Each stage in a child process, timed "
        "there after its imports; its peak RSS the child's `ru_maxrss` (an empty child, "
        f"importing torch and audiotag: {empty.get('rss_mib', 0):.0f} MiB, "
        f"{empty.get('wall', 0):.0f} s to start).",
        "",
        "| stage | wall s | audio s per wall s | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for stage, r in results.items():
        lines.append(
            f"| {stage} | {r['wall']:.1f} | {audio_s / max(r['wall'], 1e-9):.0f} "
            f"| {r['rss_mib']:.0f} |"
        )
    lines += [
        f"| **all data stages** | **{total:.1f}** | {audio_s / total:.0f} "
        f"| {max(r['rss_mib'] for r in results.values()):.0f} |",
        "",
        f"Disk used at the end: {disk / 1e9:.2f} GB; the feature store "
        f"{store['store_bytes'] / 1e9:.2f} GB ({store['frames']} frames); kept "
        f"{results['filtering']['kept']}, rejected {results['filtering']['rejected']}. "
        f"Projected to full size at this rate: {total / fraction / 60:.0f} min (target <= 30).",
    ]
    print("\n".join(lines))
    if args.write and not args.tiny:
        write_section("scale.py", "\n".join(lines))
    print(f"device: {machine()}")
    print(
        f"ratio: {audio_s / total:.0f} audio s per wall s over the data stages; "
        f"peak RSS {max(r['rss_mib'] for r in results.values()):.0f} MiB (target <= 4096)"
    )


if __name__ == "__main__":
    main()
