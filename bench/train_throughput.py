"""Training images/s of the reference and demo models on this device.

    python bench/train_throughput.py [--tiny] [--write]

Each step is what a training step costs in audiotag: forward, BCE loss,
backward and a Ranger step; on CUDA in its precision (bf16 autocast, or fp16). Each model runs twice
side by side: in the contiguous (NCHW) layout, the baseline, and in the
channels_last layout audiotag builds its models in. On CPU two more pairs: the
reference model with denormal numbers computed as such (PyTorch's default) and
flushed to zero (as audiotag trains), and one fold on every core against the
folds audiotag trains at once. The ratios are printed last. ``--write`` appends
the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import torch
from benchlib import machine, write_section
from fastai.optimizer import ranger

from audiotag.config import ModelSettings, load_config
from audiotag.devices import autocast_on, cpu_cores, cpu_slots, cpu_threads, flush_denormals
from audiotag.training.models import build_model


def measure(
    settings: ModelSettings,
    size: int,
    batch: int,
    steps: int,
    device: torch.device,
    layout: torch.memory_format = torch.channels_last,
    compile_model: bool = False,
) -> float:
    """Training images/s: forward, BCE, backward, Ranger step, in the device's precision
    (`audiotag.devices.autocast_on`: bf16 autocast on a GPU that has it, fp32 on CPU)."""
    torch.manual_seed(0)
    model = build_model(settings, 80).to(device, memory_format=layout)
    net = torch.compile(model) if compile_model else model
    cuda = device.type == "cuda"
    opt = ranger(list(model.parameters()), lr=1e-3)
    x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=layout)
    y = (torch.rand(batch, 80, device=device) < 0.05).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        with autocast_on(device):
            loss = loss_fn(net(x).float(), y)
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


def in_threads(
    fn: Callable[[], float], n: int = 1, threads: int | None = None, flush: bool = True
) -> list[float]:
    """``fn()`` in ``n`` new threads at once, each with ``threads`` torch threads (as
    ``DevicePool.lease``) and denormals flushed or not: a thread's OpenMP workers copy
    that mode when they start, so it cannot be switched on a thread already used."""
    out: list[float] = []

    def run() -> None:
        torch.get_num_threads()  # this thread keeps its own count from here on
        if threads:
            torch.set_num_threads(threads)
        torch.set_flush_denormal(flush)
        out.append(fn())

    runs = [threading.Thread(target=run) for _ in range(n)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    return out


def measure_folds(
    settings: ModelSettings, size: int, batch: int, steps: int, folds: int, threads: int
) -> float:
    """Images/s of ``folds`` trainings at once in threads of this process, in all."""
    cpu = torch.device("cpu")
    return sum(in_threads(lambda: measure(settings, size, batch, steps, cpu), folds, threads))


# (label, model settings, px, batch, steps): one measured configuration.
Row = tuple[str, ModelSettings, int, int, int]


def pick_rows(
    tiny: bool, device: torch.device, reference: ModelSettings, demo: ModelSettings
) -> list[Row]:
    """The models and sizes measured on this device (one small one with ``--tiny``)."""
    if tiny:
        return [("reference xresnet50", reference, 32, 2, 1)]
    if device.type == "cuda":
        return [
            ("reference xresnet50", reference, 128, 64, 20),
            ("reference xresnet50", reference, 256, 64, 10),
        ]
    return [
        ("reference xresnet50", reference, 128, 16, 3),
        ("reference xresnet50", reference, 256, 8, 2),
        ("demo xresnet18 x0.5 (noisy batch)", demo, 64, 32, 10),
        ("demo xresnet18 x0.5 (curated batch)", demo, 64, 16, 20),
    ]


def compare_layouts(
    rows: list[Row], device: torch.device, tiny: bool
) -> tuple[list[str], list[float]]:
    """Each row in NCHW (the baseline) against channels_last: table lines and ratios."""
    lines, ratios = [], []
    for label, settings, size, batch, steps in rows:
        # Interleaved, best of two each: a shared machine's load hits both sides alike.
        base, last = 0.0, 0.0
        for _ in range(1 if tiny else 2):
            base = max(base, measure(settings, size, batch, steps, device, torch.contiguous_format))
            last = max(last, measure(settings, size, batch, steps, device, torch.channels_last))
        ratios.append(last / base)
        lines.append(
            f"| {label} | {size} | {batch} | {base:.1f} | {last:.1f} | {last / base:.2f}x |"
        )
        print(lines[-1], flush=True)
    return lines, ratios


def compare_denormals(
    reference: ModelSettings, device: torch.device, tiny: bool
) -> tuple[str, float]:
    """On CPU: denormals computed (PyTorch's default, the baseline) against flushed.

    The reference model's gradients reach them from its third step: 4 steps after
    the warm-up. Elsewhere: no line, ratio 0.
    """
    if device.type != "cpu":
        return "", 0.0
    size, batch, steps = (32, 2, 3) if tiny else (128, 16, 4)

    def ref() -> float:
        return measure(reference, size, batch, steps, device)

    (kept,), (flushed,) = in_threads(ref, flush=False), in_threads(ref, flush=True)
    ratio = flushed / kept
    line = f"| reference xresnet50 | {size} | {batch} | {kept:.1f} | {flushed:.1f} | {ratio:.2f}x |"
    print(line, flush=True)
    return line, ratio


def compare_folds(
    rows: list[Row], device: torch.device, tiny: bool, cores: int, slots: int, threads: int
) -> tuple[list[str], list[float]]:
    """On CPU: one fold on every core (the baseline) against the device pool's share-out
    (``slots`` folds at once, ``threads`` threads each), in images/s over all folds.
    Elsewhere, or with one slot: nothing."""
    lines: list[str] = []
    ratios: list[float] = []
    if device.type != "cpu" or slots <= 1:
        return lines, ratios
    for label, settings, size, batch, steps in rows:
        one, many = 0.0, 0.0
        for _ in range(1 if tiny else 2):
            one = max(one, measure_folds(settings, size, batch, steps, 1, cores))
            many = max(many, measure_folds(settings, size, batch, steps, slots, threads))
        ratios.append(many / one)
        lines.append(f"| {label} | {size} | {batch} | {one:.1f} | {many:.1f} | {many / one:.2f}x |")
        print(lines[-1], flush=True)
    return lines, ratios


def results_body(
    lines: list[str],
    denormal_line: str,
    fold_lines: list[str],
    cores: int,
    slots: int,
    threads: int,
) -> str:
    """The bench/RESULTS.md section: the layout table, then the denormal and folds-at-once
    tables where they were measured."""
    body = (
        "| model | px | batch | images/s NCHW | images/s channels_last | ratio |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )
    if denormal_line:
        body += (
            "\nDenormal numbers on CPU, channels_last, 4 steps after the warm-up: "
            "computed as such (PyTorch's default) against flushed to zero "
            "(audiotag).\n\n| model | px | batch | images/s denormals kept | "
            "images/s flushed | ratio |\n|---|---|---|---|---|---|\n" + denormal_line + "\n"
        )
    if fold_lines:
        body += (
            f"\nFolds at once on CPU, images/s over all folds: one fold on all {cores} "
            f"cores against {slots} folds at once with {threads} thread(s) each.\n\n"
            f"| model | px | batch | 1 fold x {cores} threads | {slots} folds x "
            f"{threads} | ratio |\n|---|---|---|---|---|---|\n" + "\n".join(fold_lines)
        )
    return body


def print_ratios(
    name: str,
    ratios: list[float],
    denormal_ratio: float | None,
    fold_ratios: list[float],
    cores: int,
    slots: int,
) -> None:
    """The device and every ratio measured, last."""
    print(f"device: {name}")
    print("ratio channels_last / NCHW: " + ", ".join(f"{r:.2f}x" for r in ratios))
    if denormal_ratio is not None:
        print(f"ratio denormals flushed / kept: {denormal_ratio:.2f}x")
    if fold_ratios:
        print(
            f"ratio {slots} folds at once / 1 fold on {cores} cores: "
            + ", ".join(f"{r:.2f}x" for r in fold_ratios)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    flush_denormals()  # as audiotag trains (train_stage)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    reference, demo = load_config("reference").model, load_config("demo").model
    rows = pick_rows(args.tiny, device, reference, demo)
    name = machine()
    lines, ratios = compare_layouts(rows, device, args.tiny)
    denormal_line, denormal_ratio = compare_denormals(reference, device, args.tiny)
    cores, slots, threads = cpu_cores(), cpu_slots(), cpu_threads()
    # Folds at once: the demo's models (the recipe a CPU trains), or the tiny row.
    fold_rows = [r for r in rows if r[1] == demo or args.tiny]
    fold_lines, fold_ratios = compare_folds(fold_rows, device, args.tiny, cores, slots, threads)
    if args.write and not args.tiny:
        body = results_body(lines, denormal_line, fold_lines, cores, slots, threads)
        write_section("train_throughput.py", body)
    print_ratios(name, ratios, denormal_ratio if denormal_line else None, fold_ratios, cores, slots)


if __name__ == "__main__":
    main()
