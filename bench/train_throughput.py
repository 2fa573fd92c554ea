"""Training images/s of the reference model on this device, at 128 and 256 px.

    python bench/train_throughput.py [--tiny] [--write]

Each step is what a training step costs in audiotag: forward, BCE loss,
backward and a Ranger step, on CUDA with bf16 autocast and channels_last.
``--write`` appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from fastai.optimizer import ranger

from audiotag.config import ModelSettings, load_config
from audiotag.models import build_model

RESULTS = Path(__file__).with_name("RESULTS.md")


def measure(
    settings: ModelSettings, size: int, batch: int, steps: int, device: torch.device
) -> float:
    torch.manual_seed(0)
    model = build_model(settings, 80).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = ranger(list(model.parameters()), lr=1e-3)
    x = torch.randn(batch, 1, size, size, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 80, device=device) < 0.05).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # bf16 autocast where the GPU has it (no loss scaling needed); fp32 elsewhere.
    amp = cuda and torch.cuda.is_bf16_supported()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    step()  # warm-up: kernel selection, allocations
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    reference = load_config("reference").model
    if args.tiny:
        rows = [("reference xresnet50", reference, 32, 2, 1)]
    elif device.type == "cuda":
        rows = [
            ("reference xresnet50", reference, 128, 64, 20),
            ("reference xresnet50", reference, 256, 64, 10),
        ]
    else:
        rows = [
            ("reference xresnet50", reference, 128, 16, 3),
            ("reference xresnet50", reference, 256, 8, 2),
            ("demo xresnet18 x0.5", load_config("demo").model, 64, 32, 5),
        ]
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else (
            f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        )
    )
    lines = []
    for label, settings, size, batch, steps in rows:
        ips = measure(settings, size, batch, steps, device)
        lines.append(f"| {label} | {size} | {batch} | {ips:.1f} |")
        print(lines[-1], flush=True)
    if args.write and not args.tiny:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        with RESULTS.open("a") as f:
            f.write(
                f"\n### train_throughput.py — {name}, {stamp}\n\n"
                "| model | px | batch | images/s |\n|---|---|---|---|\n" + "\n".join(lines) + "\n"
            )
    print(f"device: {name}")


if __name__ == "__main__":
    main()
