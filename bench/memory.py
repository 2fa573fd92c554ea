"""Peak memory (RSS) of the training flow on the demo data and on a dataset 10x larger.

    python bench/memory.py [--tiny] [--write] [--big-scale 10]

Each flow run happens in a child process (a temporary Prefect server inside it,
as the flow tests use; MLflow tracking to the work dir's SQLite file). This
process polls /proc every 0.1 s and sums the resident set size (VmRSS) of the
child and all its descendants (the Prefect server the harness starts among
them); the peak of that sum is the figure. The child's own peak (VmHWM, the
kernel's high-water mark) is printed beside it, split into anonymous memory and
file pages (the memory-mapped feature store's pages count as resident once read).

The second dataset comes from the demo generator at 10x scale (``--big-scale``),
another seed: 2,500 curated, 5,000 noisy and 1,500 test clips, about 10 h of
audio. Both runs use the same short settings (2 folds, 1 epoch per stage, a
narrow net, no TTA): RSS does not depend on the epoch count, and the 5-minute
budget leaves no room for more. Target: the larger dataset's peak at most 25%
above the demo's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from benchlib import machine, prefect_sandbox, write_section

# The debug preset (one epoch per stage, a narrow net) on two folds, no TTA: the
# memory of the data stages is what is measured.
SHORT = {"folds.n_folds": 2, "eval.tta": 0}


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process in kB (empty when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return out


def _descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def measure(cmd: list[str]) -> dict:
    """Runs ``cmd``; peak summed RSS of its process tree and its own high-water marks (MiB)."""
    proc = subprocess.Popen(cmd)
    peak_tree, own = 0, {}
    while proc.poll() is None:
        tree = sum(_status(p).get("VmRSS", 0) for p in _descendants(proc.pid))
        peak_tree = max(peak_tree, tree)
        st = _status(proc.pid)
        if st:
            own = {
                "hwm": max(own.get("hwm", 0), st.get("VmHWM", 0)),
                "anon": max(own.get("anon", 0), st.get("RssAnon", 0)),
                "file": max(own.get("file", 0), st.get("RssFile", 0)),
            }
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"flow run failed ({proc.returncode}): {' '.join(cmd)}")
    return {"tree": peak_tree / 1024, **{k: v / 1024 for k, v in own.items()}}


def child(source: str, workdir: str, overrides: str) -> None:
    """The flow run itself (in the child process)."""
    warnings.filterwarnings("ignore")
    from flows.train import train_flow

    with prefect_sandbox(Path(workdir).parent):
        state = train_flow(
            source=source,
            workdir=workdir,
            preset="debug",
            overrides=json.loads(overrides),
            return_state=True,
        )
    if not state.is_completed():
        raise SystemExit(f"flow run ended {state.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a smoke run on tiny datasets")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--big-scale", type=float, default=10.0, help="the larger dataset's size")
    parser.add_argument("--child", nargs=3, metavar=("SOURCE", "WORKDIR", "OVERRIDES"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from audiotag.sources.demo import write_demo_dataset

    base_scale, big_scale = (0.03, 0.3) if args.tiny else (1.0, args.big_scale)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        runs = (("demo", base_scale, 0), ("big", big_scale, 1))
        # Datasets are written here, not in the measured child; the larger one in a
        # thread while the demo flow runs (the bench then fits in 5 minutes).
        sources: dict[str, Path] = {}

        def write(name: str, scale: float, seed: int) -> None:
            t0 = time.perf_counter()
            sources[name] = write_demo_dataset(
                Path(tmp) / name / "src", seed=seed, scale=scale, deflate=False
            )
            took = time.perf_counter() - t0
            print(f"{name}: dataset at scale {scale} written in {took:.0f} s", flush=True)

        write(*runs[0])
        writer = threading.Thread(target=write, args=runs[1])
        writer.start()
        for name, _, _ in runs:
            if name == "big":
                writer.join()
            run_dir = Path(tmp) / name
            cmd = [sys.executable, __file__, "--child", str(sources[name]), str(run_dir / "work")]
            t0 = time.perf_counter()
            results[name] = measure([*cmd, json.dumps(SHORT)])
            results[name]["wall"] = time.perf_counter() - t0
            results[name]["mb"] = (
                sum(p.stat().st_size for p in (run_dir / "work" / "data").rglob("*.wav")) / 2**20
            )
            print(f"{name}: {results[name]}", flush=True)

    demo, big = results["demo"], results["big"]
    growth = big["tree"] / demo["tree"] - 1.0
    lines = [
        f"Flow settings for both runs: `{SHORT}` (RSS does not depend on the epoch count; "
        "a 5-minute bench has no room for more). Peak RSS of the flow's process tree "
        "(flow process + temporary Prefect server), polled every 0.1 s; the flow process's "
        "own high-water mark (VmHWM) and its peak anonymous / file-backed RSS beside it. "
        "The demo run's wall time overlaps writing the larger dataset in this process.",
        "",
        "| dataset | WAV MiB | wall s | peak tree RSS MiB | flow VmHWM MiB | anon MiB | file MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, scale in (("demo", base_scale), ("big", big_scale)):
        r = results[name]
        lines.append(
            f"| demo generator x{scale:g} | {r['mb']:.0f} | {r['wall']:.0f} | {r['tree']:.0f} "
            f"| {r['hwm']:.0f} | {r['anon']:.0f} | {r['file']:.0f} |"
        )
    lines += ["", f"Growth of peak RSS: **{100 * growth:+.1f}%** (target <= +25%)."]
    print("\n".join(lines))
    if args.write and not args.tiny:
        write_section("memory.py", "\n".join(lines))
    print(f"device: {machine()}")
    print(
        f"ratio: peak RSS x{big_scale:g} data / x{base_scale:g} data = "
        f"{big['tree'] / demo['tree']:.2f} ({100 * growth:+.1f}%, target <= +25%)"
    )


if __name__ == "__main__":
    main()
