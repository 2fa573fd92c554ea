"""The demo flow's wall time, per task from Prefect's records, then a fully cached re-run.

    python bench/flow.py [--tiny] [--full] [--write]

Runs ``train_flow(source="demo", preset="demo")`` under a temporary Prefect server
(``prefect_test_harness``, PREFECT_HOME in a temporary folder; MLflow tracks to
the work dir's SQLite file), as `make demo` runs it. The full demo preset takes
about 4 min 46 s here, which would not leave room for the re-run in a 5-minute
bench, so by default the preset runs with fewer epochs (noisy 1 + 1, curated 3,
``curated.min_steps=0``); ``--full`` runs the real demo preset. The overrides are
printed and written with the figures.

Per task, the start, end and ``total_run_time`` come from Prefect's task-run
records (``get_client().read_task_runs`` for the flow run).

Orchestration overhead = flow wall time - busy time, where busy time is the
length of the union of all task runs' [start, end] intervals. Why the union and
not a sum along the DAG: on CPU the ten fold tasks are all submitted at once
and then take turns on the cores (audiotag/devices.py), so a fold's task run
includes its wait for the device, and the DAG's critical path (data tasks ->
slowest noisy -> curated chain -> ensemble) is, with the resource taken into
account, every fold back to back. The union counts each second in which some
task was running once, whatever overlaps; what it leaves out is time in which
no task ran at all: flow-run start and finish, gaps while Prefect creates task
runs, resolves futures, persists results and moves states. Target: at most 15%
of wall. The cached re-run (same work dir, same parameters) must take at most
5% of the first run's wall.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

from benchlib import machine, prefect_sandbox, write_section

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

# The demo preset with fewer epochs (the default run); --full drops them.
FEWER_EPOCHS = {
    "noisy.cycles": [{"epochs": 1, "lr": 3e-3}, {"epochs": 1, "lr": 1e-3}],
    "curated.cycles": [{"epochs": 3, "lr": 2e-3}],
    "curated.min_steps": 0,
}
# A smoke run: the debug preset (one epoch per stage, a narrow net) on two folds.
TINY = {"folds.n_folds": 2}


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end]`` intervals."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def task_records(flow_run_id: object) -> tuple[list[dict], dict]:
    """Task runs of a flow run (name, state, start, end, run time) and the flow run's own."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        flow_run = client.read_flow_run(flow_run_id)
    rows = []
    for r in runs:
        start = r.start_time.timestamp() if r.start_time else None
        end = r.end_time.timestamp() if r.end_time else None
        rows.append(
            {
                "name": r.name,
                "state": r.state.name if r.state else "?",
                "start": start,
                "end": end,
                "run_time": r.total_run_time.total_seconds(),
            }
        )
    rows.sort(key=lambda r: (r["start"] is None, r["start"] or 0.0))
    flow = {
        "start": flow_run.start_time.timestamp() if flow_run.start_time else None,
        "end": flow_run.end_time.timestamp() if flow_run.end_time else None,
        "run_time": flow_run.total_run_time.total_seconds(),
    }
    return rows, flow


def run_once(workdir: Path, preset: str, overrides: dict) -> dict:
    """One flow run: its wall time, task records and busy time."""
    from flows.train import train_flow

    t0 = time.perf_counter()
    state = train_flow(
        source="demo", workdir=str(workdir), preset=preset, overrides=overrides, return_state=True
    )
    wall = time.perf_counter() - t0
    if not state.is_completed():
        raise RuntimeError(f"flow run ended {state.name}: {state.message}")
    rows, flow = task_records(state.state_details.flow_run_id)
    busy = union_seconds([(r["start"], r["end"]) for r in rows if r["start"] and r["end"]])
    return {"wall": wall, "rows": rows, "flow": flow, "busy": busy}


def table(run: dict) -> list[str]:
    t0 = min(r["start"] for r in run["rows"] if r["start"])
    lines = ["| task | state | start s | end s | run time s |", "|---|---|---|---|---|"]
    for r in run["rows"]:
        if r["start"] is None:
            lines.append(f"| {r['name']} | {r['state']} | - | - | {r['run_time']:.1f} |")
            continue
        lines.append(
            f"| {r['name']} | {r['state']} | {r['start'] - t0:.1f} | {r['end'] - t0:.1f} "
            f"| {r['run_time']:.1f} |"
        )
    return lines


def groups(run: dict) -> str:
    def busy(pred: object) -> float:
        return union_seconds(
            [(r["start"], r["end"]) for r in run["rows"] if r["start"] and pred(r["name"])]
        )

    folds = busy(lambda n: "fold" in n)
    ens = busy(lambda n: n.startswith("tta_ensemble"))
    other = run["busy"] - folds - ens
    return f"folds {folds:.1f} s, tta_ensemble {ens:.1f} s, data and tracking tasks {other:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a smoke run on a tiny dataset")
    parser.add_argument("--full", action="store_true", help="the real demo preset (~5 min)")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    preset = "debug" if args.tiny else "demo"
    if args.tiny:
        overrides, what = TINY, "tiny smoke run (2 folds, 1 epoch per stage, 5% of the demo data)"
    elif args.full:
        overrides, what = {}, "the demo preset as `make demo` runs it"
    else:
        overrides = FEWER_EPOCHS
        what = (
            "demo preset with fewer epochs (noisy 1+1, curated 3, curated.min_steps=0); "
            "--full for the real preset"
        )
    print(f"flow: {what}\noverrides: {overrides}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
        tmp_path = Path(tmp)
        workdir = tmp_path / "work"
        if args.tiny:
            # The demo source writes the full-size dataset; a tiny one stands in for it.
            from audiotag.data.layout import COMPETITION
            from audiotag.sources.demo import write_demo_dataset
            from audiotag.steps.workspace import Workspace

            src = Workspace.at(workdir).demo_source
            built = write_demo_dataset(src, seed=0, scale=0.05)
            os.replace(built, src / f"{COMPETITION}-seed0.zip")
        with prefect_sandbox(tmp_path):
            first = run_once(workdir, preset, overrides)
            print(f"first run: wall {first['wall']:.1f} s", flush=True)
            again = run_once(workdir, preset, overrides)
            print(f"cached re-run: wall {again['wall']:.1f} s", flush=True)

    overhead = first["wall"] - first["busy"]
    share = overhead / first["wall"]
    rerun = again["wall"] / first["wall"]
    lines = [
        f"Flow: {what}. Overrides: `{overrides}`.",
        "",
        f"First run: wall {first['wall']:.1f} s (Prefect's flow-run record: "
        f"{first['flow']['run_time']:.1f} s running); tasks busy {first['busy']:.1f} s "
        f"({groups(first)}); orchestration overhead {overhead:.1f} s = "
        f"**{100 * share:.1f}% of wall** (target <= 15%).",
        "",
        *table(first),
        "",
        f"Cached re-run, same work dir: wall {again['wall']:.1f} s = "
        f"**{100 * rerun:.1f}% of the first run** (target <= 5%); tasks busy "
        f"{again['busy']:.1f} s ({groups(again)}).",
        "",
        *table(again),
    ]
    print("\n".join(lines))
    if args.write and not args.tiny:
        write_section("flow.py", "\n".join(lines))
    print(f"device: {machine()}")
    print(
        f"ratio: overhead {100 * share:.1f}% of wall (target <= 15%), "
        f"cached re-run {100 * rerun:.1f}% of first run (target <= 5%)"
    )


if __name__ == "__main__":
    main()
