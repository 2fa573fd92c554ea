"""Micro-F1 of the tags that each selection rule gives on a trained run's test set.

    python bench/thresholds.py --workdir demo-work [--run NAME] [--write]
    python bench/thresholds.py --tiny

Reads what `audiotag run` wrote (after `make demo`, say): the ensemble's out-of-fold
predictions (``runs/<run>/oof.parquet``) with the kept clips' labels, and its test-set
predictions (``submission.csv``) with the test labels. Thresholds are calibrated on the
out-of-fold predictions alone (`audiotag.inference.thresholds`, as the run's ensemble
step stores them in the package), then each rule tags the labelled test clips:

- ``calibrated``: each label at or above its own threshold (``audiotag tag``'s default);
- ``top_3``: each clip's three most probable labels (the old default);
- ``global_0.5``: every label at or above 0.5; and the best single global threshold
  chosen on the out-of-fold predictions (``global_oof``), for reference.

Acceptance (issue 19): ``calibrated`` higher than ``top_3`` and than ``global_0.5``.
``--tiny``: synthetic probabilities through the same code, a smoke run, not a figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from benchlib import write_section

from audiotag.inference.thresholds import (
    DEFAULT_THRESHOLD,
    calibrate_thresholds,
    f1_scores,
    top_k_predicted,
)
from audiotag.steps.dataset import kept_rows, targets
from audiotag.steps.workspace import Workspace


def run_predictions(workdir: Path, run: str | None) -> tuple:
    """``(vocab, oof truth, oof probs, test truth, test probs, run name)`` of a run."""
    ws = Workspace.at(workdir)
    runs = sorted(p.parent.name for p in (ws.root / "runs").glob("*/oof.parquet"))
    if not runs:
        raise SystemExit(f"{workdir}: no trained run (runs/*/oof.parquet); `make demo` first")
    name = run or runs[-1]
    run_dir = ws.run_dir(name)
    oof = pd.read_parquet(run_dir / "oof.parquet")
    sub = pd.read_csv(run_dir / "submission.csv")
    vocab = tuple(sub.columns[1:])
    labels = {r["fname"]: r["labels"] for r in kept_rows(ws) if r["subset"] != "test"}
    oof_truth = targets([{"labels": labels[f]} for f in oof.fname], vocab)
    test = [r for r in kept_rows(ws, "test") if r["labels"]]
    by_name = sub.set_index("fname")
    test = [r for r in test if r["fname"] in by_name.index]
    test_truth = targets(test, vocab)
    test_probs = by_name.loc[[r["fname"] for r in test], list(vocab)].to_numpy()
    return vocab, oof_truth, oof[list(vocab)].to_numpy(), test_truth, test_probs, name


def synthetic_predictions(seed: int = 0) -> tuple:
    """Probabilities that rank true labels higher, with a per-label scale: a smoke input."""
    rng = np.random.default_rng(seed)
    vocab = tuple(f"label_{i}" for i in range(12))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        truth = rng.random((n, len(vocab))) < 0.12
        scale = np.linspace(0.2, 0.9, len(vocab))
        probs = np.clip(rng.normal(0.15, 0.1, truth.shape) + truth * scale, 0, 1)
        return truth, probs

    (oof_truth, oof_probs), (test_truth, test_probs) = draw(300), draw(200)
    return vocab, oof_truth, oof_probs, test_truth, test_probs, "synthetic"


def compare(vocab, oof_truth, oof_probs, test_truth, test_probs) -> tuple[dict, object]:
    """Test micro-F1 per rule, and the thresholds calibrated on the OOF predictions."""
    thresholds = calibrate_thresholds(oof_truth, oof_probs, vocab)
    rules = {
        "calibrated": test_probs >= thresholds.array(vocab),
        "top_3": top_k_predicted(test_probs, 3),
        "global_0.5": test_probs >= DEFAULT_THRESHOLD,
        "global_oof": test_probs >= thresholds.global_threshold,
    }
    return {k: f1_scores(test_truth, v) for k, v in rules.items()}, thresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="synthetic probabilities, seconds")
    parser.add_argument("--workdir", type=Path, help="a work dir `audiotag run` trained")
    parser.add_argument("--run", help="the run's name (default: the newest)")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    if args.tiny:
        data = synthetic_predictions()
    elif args.workdir is None:
        parser.error("--workdir DIR (a trained work dir) or --tiny")
    else:
        data = run_predictions(args.workdir, args.run)
    vocab, oof_truth, oof_probs, test_truth, test_probs, name = data
    scores, thresholds = compare(vocab, oof_truth, oof_probs, test_truth, test_probs)
    lines = [
        f"Run `{name}`: {len(oof_truth)} out-of-fold clips (thresholds calibrated there), "
        f"{len(test_truth)} labelled test clips, {len(vocab)} labels; "
        f"{len(thresholds.fallback)} labels with fewer than {thresholds.min_positives} OOF "
        f"positives took the global threshold {thresholds.global_threshold:.3f}.",
        "",
        "| rule | test micro-F1 | mean per-label F1 |",
        "|---|---|---|",
    ]
    for rule, s in scores.items():
        lines.append(f"| {rule} | {s['micro_f1']:.4f} | {float(np.mean(s['f1'])):.4f} |")
    best = scores["calibrated"]["micro_f1"]
    beats = {r: best > scores[r]["micro_f1"] for r in ("top_3", "global_0.5")}
    verdict = "met" if all(beats.values()) else "NOT met"
    lines += ["", f"calibrated > top_3 and > global_0.5: **{verdict}**"]
    print("\n".join(lines))
    if args.write and not args.tiny:
        write_section("thresholds.py", "\n".join(lines))
    ratio = best / max(scores["top_3"]["micro_f1"], 1e-9)
    print(f"ratio: calibrated / top_3 micro-F1 = {ratio:.2f}x")


if __name__ == "__main__":
    main()
