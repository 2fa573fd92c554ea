"""Quality on real recordings: the network against the built-in linear baseline.

    python bench/quality.py [--tiny] [--write] [--sets NAME ...] [--variants NAME ...]

Runs ``train_flow`` as a user would (``--source DIR --preset demo``) on each data
set and prints, side by side, the network's and the built-in baseline's
out-of-fold and test lwlrap (logistic regression on each clip's log-mel mean
and std, fitted on the same folds), and the wall time. The sets:

- ``demo``: the embedded synthetic demo (its noisy set has 20% wrong labels);
- ``drums``: the 48 real one-shots in ``../shared/data/drums`` as they are
  (curated only, no test set: OOF is compared);
- every set under ``--realsets`` (default ``/work/realsets``), built from Debian
  packages of recorded sounds by ``bench/realsets.py``, each with a small noisy
  subset and a test set of held-out sources.

The variants: ``before`` (the demo preset as it was before issue 15's budget
fixes: the average-pool head, no step floor in the noisy stage, and the curated
stage from noisy weights got 120 steps, even from weights that learned nothing),
``no_noisy_floor`` (the demo preset without the noisy stage's 150-step floor
from scratch), ``avg_head`` (the demo preset with fastai's average-pool head
instead of PANNs' mean-max one), ``demo`` (the preset now), ``demo_plus`` (the
demo preset with the third stage that adds the noisy clips the models agree
with), ``bootstrap`` (the demo preset with the soft bootstrapping loss, beta 0.7,
in the noisy stage). Variants of one set share a work dir, so what they have in
common (data, features, identical folds) is computed once. ``--tiny`` runs the
debug preset on a tiny demo set (a smoke run).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from benchlib import machine, prefect_sandbox, write_section

ROOT = Path(__file__).resolve().parents[1]
DRUMS = ROOT.parent / "shared" / "data" / "drums"
# name -> (preset, overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "before": (
        "demo",
        {
            "model.head_pool": "avg",
            "noisy.scratch_min_steps": 0,
            "curated.min_steps": 120,
            "curated.init_min_gain": -1.0,
        },
    ),
    "no_noisy_floor": ("demo", {"noisy.scratch_min_steps": 0}),
    "demo": ("demo", {}),
    "demo_plus": ("demo_plus", {}),
    "bootstrap": ("demo", {"noisy.loss": "soft_bootstrap"}),
    "avg_head": ("demo", {"model.head_pool": "avg"}),
}


def drums_source(out: Path) -> Path:
    """``../shared/data/drums`` in the FAT2019 layout: curated clips only."""
    data = out / "drums"
    (data / "train_curated").mkdir(parents=True, exist_ok=True)
    with (DRUMS / "labels.csv").open() as f, (data / "train_curated.csv").open("w") as dst:
        writer = csv.writer(dst)
        writer.writerow(["fname", "labels"])
        for row in csv.DictReader(f):
            shutil.copy(DRUMS / row["fname"], data / "train_curated" / row["fname"])
            writer.writerow([row["fname"], row["labels"]])
    return data


def run_one(source: str, workdir: Path, preset: str, overrides: dict) -> dict:
    """One flow run: the summary's scores and its wall time."""
    from flows.train import train_flow

    t0 = time.perf_counter()
    summary = train_flow(source=source, workdir=str(workdir), preset=preset, overrides=overrides)
    return {
        "wall": time.perf_counter() - t0,
        "oof": summary["oof_lwlrap"],
        "test": summary["test_lwlrap"],
        "base_oof": summary["baseline"]["oof_lwlrap"],
        "base_test": summary["baseline"]["test_lwlrap"],
        "kept": summary["kept"],
        "noisy": _mean([f.get("noisy") for f in summary["folds"]]),
    }


def _mean(xs: list[float | None]) -> float | None:
    """The mean of the scores there are (a skipped stage has None in every fold)."""
    got = [x for x in xs if x is not None]
    return sum(got) / len(got) if got else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| set | variant | clips | noisy stage | network OOF | baseline OOF | network test "
        "| baseline test | margin | wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours, theirs = (
            (r["test"], r["base_test"]) if r["test"] is not None else (r["oof"], r["base_oof"])
        )
        lines.append(
            f"| {r['set']} | {r['variant']} | {r['kept']} | {_fmt(r.get('noisy'))} | "
            f"{_fmt(r['oof'])} | "
            f"{_fmt(r['base_oof'])} | {_fmt(r['test'])} | {_fmt(r['base_test'])} | "
            f"{ours - theirs:+.3f} | {r['wall'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def sources(args: argparse.Namespace, tmp: Path) -> dict[str, str]:
    if args.tiny:
        from audiotag.sources.demo import write_demo_dataset

        return {"demo-tiny": str(write_demo_dataset(tmp / "src", seed=0, scale=0.05))}
    found = {}
    realsets = Path(args.realsets)
    if realsets.is_dir():
        for d in sorted(p for p in realsets.iterdir() if (p / "train_curated.csv").exists()):
            found[d.name] = str(d)
    found["demo"] = "demo"
    if (DRUMS / "labels.csv").exists():
        found["drums"] = str(drums_source(tmp))
    return {k: v for k, v in found.items() if not args.sets or k in args.sets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a smoke run on a tiny demo set")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--realsets", default="/work/realsets")
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        tmp_path = Path(tmp)
        with prefect_sandbox(tmp_path):
            for name, source in sources(args, tmp_path).items():
                for variant in ["demo"] if args.tiny else args.variants:
                    preset, overrides = VARIANTS[variant]
                    if args.tiny:
                        preset, overrides = "debug", {"folds.n_folds": 2}
                    res = run_one(source, tmp_path / f"work-{name}", preset, overrides)
                    rows.append({"set": name, "variant": variant, **res})
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    body = (
        f"Machine: {machine()}. Margin: network minus baseline, on test where the set has "
        "test labels, else out-of-fold. Noisy stage: its mean held-out lwlrap over the "
        "folds (chance is about 0.3 on these sets).\n\n" + table(rows)
    )
    print(body)
    if args.write and not args.tiny:
        write_section("quality", body)


if __name__ == "__main__":
    sys.exit(main())
