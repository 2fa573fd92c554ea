"""The figures of the GPU check (`bench/gpu_check.sh` runs this after the `gpu` tests).

    python bench/gpu_check.py [--tiny] [--write] [--compile]

On this device, in the precision audiotag trains in here (bf16 autocast on a GPU
that has it, float32 on CPU; `audiotag.devices.device_precision`):

1. training images/s of the reference model at 128 and 256 px (forward, BCE,
   backward, Ranger step: `bench/train_throughput.py`'s step), and with
   ``torch.compile`` when ``--compile`` is given;
2. whole-clip prediction images/s of the same model (`predict_clips`: windows
   covering each clip, no gradient, in large batches), against (1): what
   validating every epoch costs;
3. a 2-epoch reference training (1 epoch at 128 px, 1 at 256 px, validated after
   each) of one fold on the demo dataset with the reference mel, through
   `train_stage`: seconds of training and of validation per epoch;
4. the full reference run projected from (1) and (2) with FAT2019's counts
   (bench/RESULTS.md, "Projection"), validating every 5th epoch and every epoch.

``--tiny`` runs every step on tiny sizes (the debug preset, 32 px): the dry run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import machine, prepare_demo, write_section
from train_throughput import measure as train_rate

from audiotag.config import ModelSettings, StageSettings, TrainConfig, load_config
from audiotag.devices import device_precision, flush_denormals
from audiotag.features.store import FeatureStore, build_feature_store
from audiotag.inference.predict import predict_clips
from audiotag.training.batches import Clips, Normalizer, window_starts
from audiotag.training.models import build_model

# FAT2019 per fold of the reference run (bench/RESULTS.md, "Projection"): training
# clips, and held-out clips with their mean whole-clip windows (overlap 0.5).
TRAIN_CLIPS = {"noisy": 15852, "curated": 3976}
VALID_WINDOWS = {"noisy": 3963 * 14, "curated": 993 * 7}
FOLDS = 5


def predict_rate(
    settings: ModelSettings, size: int | None, width: int, batch: int, n: int, device: torch.device
) -> float:
    """Windows/s of `predict_clips` over clips of 8 windows each (whole-clip validation)."""
    torch.manual_seed(0)
    model = build_model(settings, 80).to(device)
    frames = width * 9 // 2  # 8 windows at overlap 0.5
    clips_n = max(1, n // len(window_starts(frames, width, 0.5)))
    rng = np.random.default_rng(0)
    data = rng.normal(-60, 10, size=(clips_n * frames, 128)).astype(np.float32)
    offsets = np.arange(clips_n, dtype=np.int64) * frames
    clips = Clips(offsets, np.full(clips_n, frames), np.zeros((clips_n, 80), np.float32))
    norm, ev = Normalizer(-60.0, 10.0, 60.0), load_config("reference").eval
    args = (model, data, clips, width, norm, size, ev)
    predict_clips(*args, device=device, batch_size=batch)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    predict_clips(*args, device=device, batch_size=batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clips_n * 8 / (time.perf_counter() - t0)


def validated_epochs(st: StageSettings) -> list[int | None]:
    """The size (px; None: unresized) of each epoch the stage scores its held-out clips in."""
    sizes = [c.size for c in st.cycles for _ in range(c.epochs)]
    return [
        sizes[e - 1] for e in range(1, st.epochs + 1) if e % st.valid_every == 0 or e == st.epochs
    ]


def project(config: TrainConfig, rates: dict[str, float], every: int) -> dict[str, float]:
    """Seconds of the full reference run's training and validation, at ``rates``
    (``train128``, ``train256``, ``predict128``, ``predict256``), validating every
    ``every``-th epoch and the last."""
    out = {"train": 0.0, "valid": 0.0}
    for st in config.stages:
        for c in st.cycles:
            px = "128" if c.size is None else "256"
            out["train"] += FOLDS * c.epochs * TRAIN_CLIPS[st.name] / rates[f"train{px}"]
        for size in validated_epochs(st.model_copy(update={"valid_every": every})):
            px = "128" if size is None else "256"
            out["valid"] += FOLDS * VALID_WINDOWS[st.name] / rates[f"predict{px}"]
    return out


def train_two_epochs(tmp: Path, tiny: bool, device: torch.device) -> list[dict]:
    """One fold's 2-epoch reference noisy stage on the demo data: seconds per epoch."""
    from audiotag.steps.dataset import to_clips
    from audiotag.training.stage import EpochRecord, StageJob, train_stage

    preset = "debug" if tiny else "reference"
    cycles = [{"epochs": 1, "lr": 3e-3}, {"epochs": 1, "lr": 1e-3, "size": 32 if tiny else 256}]
    config = load_config(preset, {"noisy.cycles": cycles, "noisy.valid_every": 1})
    # The demo data at full size on a GPU; a tenth on CPU (the reference net at 256 px
    # trains a few images/s there).
    data_dir, rows = prepare_demo(tmp, 0.03 if tiny else 1.0 if device.type == "cuda" else 0.1)
    t0 = time.perf_counter()
    store = FeatureStore.open(build_feature_store(rows, data_dir, config.mel, tmp / "store"))
    store_s = time.perf_counter() - t0
    vocab = tuple(sorted({label for r in rows for label in r["labels"]}))
    noisy = [r for r in rows if r["subset"] == "noisy"]
    cut = len(noisy) * 4 // 5
    job = StageJob(
        data=store.data,
        train=to_clips(store, noisy[:cut], vocab),
        valid=to_clips(store, noisy[cut:], vocab),
        vocab=vocab,
        config=config,
        stage="noisy",
        fold=0,
        out_dir=tmp / "model",
        device=str(device),
    )
    epochs: list[dict] = []
    last = [time.perf_counter()]

    def on_epoch(rec: EpochRecord) -> None:
        now = time.perf_counter()
        epochs.append(
            {"epoch": rec.epoch, "train": rec.seconds, "valid": now - last[0] - rec.seconds}
        )
        last[0] = now

    train_stage(job, on_epoch)
    for e in epochs:
        e.update(clips=len(job.train), valid_clips=len(job.valid), store_s=store_s)
    return epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="every step on tiny sizes")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--compile", action="store_true", help="also with torch.compile")
    args = parser.parse_args()
    flush_denormals()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    reference = load_config("reference")
    model = load_config("debug").model if args.tiny else reference.model
    # (px, train batch, train steps, predict batch, predict windows)
    if args.tiny:
        shapes = {"128": (32, 2, 1, 8, 8), "256": (48, 2, 1, 8, 8)}
    elif cuda:
        shapes = {"128": (128, 64, 20, 512, 4096), "256": (256, 64, 10, 256, 2048)}
    else:
        shapes = {"128": (128, 16, 3, 64, 128), "256": (256, 8, 2, 32, 32)}
    rates: dict[str, float] = {}
    lines = [
        f"Device: {machine()}; precision {device_precision(device)}. Training: forward, "
        "BCE, backward, Ranger step (`train_throughput.measure`); prediction: "
        "`predict_clips` over whole clips of 8 windows (overlap 0.5), no gradient.",
        "",
        "| model | px | train batch | train images/s | predict batch | predict images/s "
        "| predict / train |",
        "|---|---|---|---|---|---|---|",
    ]
    for px, (size, tb, steps, pb, n) in shapes.items():
        rates[f"train{px}"] = train_rate(model, size, tb, steps, device)
        # The windows are 128 frames; the 256 px cycles resize them, as in training.
        width = size if args.tiny else 128
        rates[f"predict{px}"] = predict_rate(
            model, None if size == width else size, width, pb, n, device
        )
        ratio = rates[f"predict{px}"] / rates[f"train{px}"]
        lines.append(
            f"| {'debug' if args.tiny else 'reference'} | {size} | {tb} "
            f"| {rates[f'train{px}']:.1f} | {pb} | {rates[f'predict{px}']:.1f} | {ratio:.1f}x |"
        )
        print(lines[-1], flush=True)
        if args.compile and not args.tiny:
            compiled = train_rate(model, size, tb, steps, device, compile_model=True)
            lines.append(
                f"| reference, torch.compile | {size} | {tb} | {compiled:.1f} | | | "
                f"{compiled / rates[f'train{px}']:.2f}x over eager |"
            )
            print(lines[-1], flush=True)
            rates[f"train{px}"] = max(rates[f"train{px}"], compiled)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-check-") as tmp:
        epochs = train_two_epochs(Path(tmp), args.tiny, device)
    e0 = epochs[0]
    lines += [
        "",
        f"2-epoch reference noisy stage, one fold of the demo data ({e0['clips']} training, "
        f"{e0['valid_clips']} held-out clips; feature store built in {e0['store_s']:.0f} s):",
        "",
        "| epoch | training s | validation + checkpoint s | validation share |",
        "|---|---|---|---|",
    ]
    for e in epochs:
        lines.append(
            f"| {e['epoch']} | {e['train']:.1f} | {e['valid']:.1f} "
            f"| {100 * e['valid'] / max(e['train'], 1e-9):.0f}% |"
        )
    lines += ["", "Projected full reference run (5 folds, FAT2019's counts), this device:", ""]
    lines += ["| validation | training h | validation h | total h | validation / training |"]
    lines += ["|---|---|---|---|---|"]
    for every in (reference.stage("noisy").valid_every, 1):
        p = project(reference, rates, every)
        lines.append(
            f"| every {every} epoch(s) | {p['train'] / 3600:.1f} | {p['valid'] / 3600:.1f} "
            f"| {(p['train'] + p['valid']) / 3600:.1f} | {100 * p['valid'] / p['train']:.0f}% |"
        )
    print("\n".join(lines), flush=True)
    if args.write and not args.tiny:
        write_section("gpu_check.py", "\n".join(lines))
    p1 = project(reference, rates, 1)
    print(f"device: {machine()}")
    print(
        f"ratio: prediction / training images/s {rates['predict128'] / rates['train128']:.1f}x "
        f"(128 px), {rates['predict256'] / rates['train256']:.1f}x (256 px); validating "
        f"every epoch costs {100 * p1['valid'] / p1['train']:.0f}% of training (target <= 15%)"
    )


if __name__ == "__main__":
    main()
