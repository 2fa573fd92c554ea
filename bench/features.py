"""Feature stage and training input: audiotag against the librosa code a user would write.

    python bench/features.py [--tiny] [--write] [--scale S] [--repeats N]

Both sides run in this process on the same files: the embedded demo dataset
(`audiotag.sources.demo`, 900 kept clips, about 50 min of 44.1 kHz audio at scale 1),
with the mel settings of the ``reference`` recipe (128 bands, hop 690) and of the
``demo`` preset (64 bands, hop 1380).

(a) The one-off feature stage. audiotag: ``build_feature_store`` over every kept
    file (read, cut the non-silent parts the metadata found, log-mel, one
    memory-mapped array). Baseline, per file: ``librosa.load`` at the preset's
    rate, ``librosa.effects.split(top_db=20)``, the non-silent parts
    concatenated, ``librosa.feature.melspectrogram`` (the recipe's n_fft,
    hop_length, win_length, n_mels, fmin, fmax; ``htk=True, norm=None``) and
    ``librosa.power_to_db(top_db=60)``. The store build uses the non-silent
    intervals found by the metadata step, so the time of the metadata step
    (which reads every file too, and also hashes it) is printed beside it, and a
    from-scratch ratio (metadata + store) as well. Target: store >= 2.5x.
(b) The training input. audiotag: the crops a training epoch draws
    (`audiotag.training.batches.TrainBatches`: crop gather from the store, top_db clamp,
    normalisation, SpecAugment and lighting; the noisy stage's batch size).
    Baseline: what a notebook Dataset's ``__getitem__`` does per item every
    epoch: load, split, random 2 s crop or pad, mel, dB. Target: >= 20x.

Times are the fastest of ``--repeats`` interleaved repeats (the others carry
other people's load on a shared machine). Before timing, the script checks that
librosa's features match audiotag's on one clip, so that both sides compute the
same thing. ``--write`` appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from benchlib import (
    best_of,
    librosa_clip,
    librosa_features,
    librosa_logmel,
    librosa_train_item,
    machine,
    prepare_demo,
    write_section,
)

from audiotag.config import TrainConfig, load_config
from audiotag.data.metadata import extract_metadata
from audiotag.features.audio import find_nonsilent, read_audio, remove_silence
from audiotag.features.logmel import clamp_top_db, compute_logmel
from audiotag.features.store import FeatureStore, build_feature_store
from audiotag.training.batches import Clips, TrainBatches, measure_normalizer

# librosa warns when a clip is shorter than n_fft; the baseline pads as librosa does.
warnings.filterwarnings("ignore", message="n_fft=")


def check_match(data_dir: Path, row: dict, config: TrainConfig) -> str:
    """librosa's features of one clip against audiotag's: the comparison is like for like."""
    mel = config.mel
    path = data_dir / row["path"]
    samples, sr = read_audio(path)
    ours_iv = find_nonsilent(samples, mel.silence_top_db)
    y = librosa_clip(path, mel)
    import librosa

    theirs_iv = librosa.effects.split(librosa.load(path, sr=mel.sample_rate)[0], top_db=20)
    ours = compute_logmel(remove_silence(samples, ours_iv), sr, mel)  # (frames, n_mels)
    theirs = librosa_logmel(y, mel, None).T
    if ours.shape != theirs.shape:
        raise SystemExit(f"feature shapes differ: audiotag {ours.shape}, librosa {theirs.shape}")
    top = float(mel.top_db)
    a = clamp_top_db(torch.from_numpy(ours)[None], top)[0].numpy()
    b = np.maximum(theirs, theirs.max() - top)
    diff = np.abs(a - b)
    same_iv = np.array_equal(ours_iv, theirs_iv)
    text = (
        f"match ({config.preset} mel) on {row['path']}: non-silent intervals "
        f"{'identical' if same_iv else 'DIFFER'} ({len(ours_iv)}), {ours.shape[0]} frames x "
        f"{ours.shape[1]} bands on both sides, |librosa - audiotag| after top_db 60: "
        f"max {diff.max():.4f} dB, mean {diff.mean():.5f} dB"
    )
    if not same_iv or diff.max() > 0.1:
        raise SystemExit(f"features do not match: {text}")
    return text


def bench_store(
    data_dir: Path, rows: list[dict], config: TrainConfig, tmp: Path, repeats: int
) -> dict:
    """(a): store build vs librosa per-file full-clip features; also the metadata step."""
    mel = config.mel
    librosa_features(data_dir / rows[0]["path"], mel)  # warm-up: imports, numba, FFT plans
    ours, theirs, meta = [], [], []
    for rep in range(repeats):
        root = tmp / f"store-{config.preset}-{rep}"
        t0 = time.perf_counter()
        build_feature_store(rows, data_dir, mel, root)
        ours.append(time.perf_counter() - t0)
        shutil.rmtree(root)
        t0 = time.perf_counter()
        for row in rows:
            librosa_features(data_dir / row["path"], mel)
        theirs.append(time.perf_counter() - t0)
        out = tmp / f"metadata-{rep}.parquet"
        t0 = time.perf_counter()
        extract_metadata(data_dir, out, mel.silence_top_db)
        meta.append(time.perf_counter() - t0)
    return {"ours": best_of(ours), "theirs": best_of(theirs), "meta": best_of(meta)}


def bench_training_input(
    data_dir: Path, rows: list[dict], config: TrainConfig, tmp: Path, repeats: int, items: int
) -> dict:
    """(b): training crops per second from the store vs librosa per item."""
    mel, stage = config.mel, config.stage("noisy")
    root = build_feature_store(rows, data_dir, mel, tmp / f"store-{config.preset}")
    store = FeatureStore.open(root)
    train = [r for r in rows if r["subset"] in ("curated", "noisy")]
    offsets, frames = store.locate([(r["subset"], r["fname"]) for r in train])
    clips = Clips(offsets, frames, np.zeros((len(train), 80), np.float32))
    norm = measure_normalizer(store.data, clips, config.crop_frames, mel.top_db, seed=0)
    batches = TrainBatches(
        store.data,
        clips,
        stage.batch_size,
        config.crop_frames,
        norm,
        config.augment,
        stage.cycles[0].size,
        torch.device("cpu"),
    )
    rng = np.random.default_rng(0)
    sample = [train[i] for i in rng.choice(len(train), size=min(items, len(train)), replace=False)]
    ours, theirs = [], []
    for rep in range(repeats):
        n, t0 = 0, time.perf_counter()
        epoch = 0
        while n < 4 * len(train) or time.perf_counter() - t0 < 1.0:  # at least 1 s of work
            batches.set_epoch(rep * 1000 + epoch)
            for x, _ in batches:
                n += len(x)
            epoch += 1
        ours.append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        for row in sample:
            librosa_train_item(data_dir / row["path"], mel, config.crop_frames, rng)
        theirs.append((time.perf_counter() - t0) / len(sample))
    return {"ours": best_of(ours), "theirs": best_of(theirs), "items": len(train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--scale", type=float, default=1.0, help="demo dataset size multiplier")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per side")
    args = parser.parse_args()
    scale, repeats, items = (0.03, 1, 8) if args.tiny else (args.scale, args.repeats, 200)
    presets = ["demo"] if args.tiny else ["reference", "demo"]

    lines, ratios = [], []
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        data_dir, rows = prepare_demo(tmp_path, scale)
        audio_s = sum(r["duration"] for r in rows)
        print(
            f"data: demo dataset at scale {scale}: {len(rows)} kept clips, {audio_s:.0f} s of "
            f"audio (written in {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        lines.append(
            f"Data: the demo dataset at scale {scale}, {len(rows)} kept clips, {audio_s:.0f} s "
            f"of audio; fastest of {repeats} interleaved repeats per side."
        )
        # A clip with several non-silent parts, so the split is exercised too.
        probe = max(rows, key=lambda r: (len(r["nonsilent"]), r["duration"]))
        for preset in presets:
            config = load_config(preset)
            match = check_match(data_dir, probe, config)
            print(match, flush=True)
            st = bench_store(data_dir, rows, config, tmp_path, repeats)
            tr = bench_training_input(data_dir, rows, config, tmp_path, repeats, items)
            n = len(rows)
            r_store = st["theirs"] / st["ours"]
            r_scratch = st["theirs"] / (st["ours"] + st["meta"])
            r_train = tr["theirs"] / tr["ours"]
            ratios.append((preset, r_store, r_scratch, r_train))
            noisy_batch = config.stage("noisy").batch_size
            block = [
                f"**{preset} mel** ({config.mel.n_mels} bands, hop {config.mel.hop_length}, "
                f"n_fft {config.mel.n_fft}). {match}.",
                "",
                "| stage | side | clips/s | audio s per wall s | ratio |",
                "|---|---|---|---|---|",
                f"| (a) feature stage | librosa per file | {n / st['theirs']:.0f} "
                f"| {audio_s / st['theirs']:.0f} | 1 |",
                f"| (a) feature stage | audiotag store build | {n / st['ours']:.0f} "
                f"| {audio_s / st['ours']:.0f} | **{r_store:.1f}x** (target >= 2.5x) |",
                f"| (a) feature stage | audiotag metadata + store, from scratch "
                f"| {n / (st['ours'] + st['meta']):.0f} "
                f"| {audio_s / (st['ours'] + st['meta']):.0f} | {r_scratch:.1f}x |",
                f"| (b) training input | librosa per item | {1 / tr['theirs']:.0f} | | 1 |",
                f"| (b) training input | audiotag TrainBatches (batch {noisy_batch}) "
                f"| {1 / tr['ours']:.0f} | | **{r_train:.0f}x** (target >= 20x) |",
            ]
            print("\n".join(block), flush=True)
            lines += ["", *block]
    lines += [
        "",
        "The metadata step reads every file with 2 threads and also hashes it (sha1), "
        "finds the non-silent intervals and level statistics; the store build reuses its "
        "intervals. The baseline's training item is its own load + split + crop + mel + dB "
        "for every item of every epoch; audiotag's is a slice of the memory-mapped store.",
    ]
    if args.write and not args.tiny:
        write_section("features.py", "\n".join(lines))
    print(f"device: {machine()}")
    print(
        "ratio: "
        + "; ".join(
            f"{p} mel: feature stage {a:.1f}x (target >= 2.5x; from scratch with metadata "
            f"{s:.1f}x), training input {t:.0f}x (target >= 20x)"
            for p, a, s, t in ratios
        )
    )


if __name__ == "__main__":
    main()
