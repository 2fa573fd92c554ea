"""The ``audiotag`` command line: the entry layer above the flows."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any


def _print_summary(summary: dict[str, Any]) -> None:
    print("\naudiotag run", summary["run_name"])
    print(f"{'fold':>6}  {'noisy lwlrap':>12}  {'curated lwlrap':>14}")
    for row in summary["folds"]:
        noisy = "-" if row["noisy"] is None else f"{row['noisy']:.4f}"
        print(f"{row['fold']:>6}  {noisy:>12}  {row['curated']:>14.4f}")
    print(f"\nout-of-fold lwlrap (curated): {summary['oof_lwlrap']:.4f}")
    test = summary["test_lwlrap"]
    print(
        f"test lwlrap:                  {'n/a (no test labels)' if test is None else f'{test:.4f}'}"
    )
    print(f"files kept / rejected:        {summary['kept']} / {summary['rejected']}")
    print(f"submission:   {summary['submission'] or 'none (no test set)'}")
    print(f"scores:       {summary['scores']}")
    print(f"MLflow run:   {summary['mlflow_run_id']} in {summary['mlflow_uri']}")
    print(f"  browse:     mlflow ui --backend-store-uri {summary['mlflow_uri']} --host 127.0.0.1")


def cmd_demo_data(args: argparse.Namespace) -> int:
    from audiotag.demo import write_demo_dataset

    path = write_demo_dataset(Path(args.dir), seed=args.seed, scale=args.scale)
    print(path)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from audiotag.config import load_config, parse_override

    overrides = dict(parse_override(o) for o in args.set)
    try:
        load_config(args.preset, overrides)  # refuse bad settings before any work starts
    except ValueError as err:
        print(f"audiotag: {err}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(workdir / "prefect-results"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/mlflow.db")
    # The temporary server's telemetry heartbeat fights the flow for its SQLite
    # file and logs 'database is locked' tracebacks; nothing is lost without it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    from flows.train import train_flow

    summary = train_flow(
        source=args.source, workdir=str(workdir), preset=args.preset, overrides=overrides
    )
    _print_summary(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audiotag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="write the synthetic demo dataset (FAT2019 layout)")
    demo.add_argument("dir", help="output directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--scale", type=float, default=1.0, help="size multiplier")
    demo.set_defaults(func=cmd_demo_data)

    run = sub.add_parser("run", help="train the 5-fold ensemble as a Prefect flow")
    run.add_argument(
        "--source", default="demo", help="'demo', a dataset directory, or the competition zip"
    )
    run.add_argument("--preset", default="demo", choices=["demo", "reference"])
    run.add_argument("--workdir", default="audiotag-work")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field, e.g. --set noisy.batch_size=32 "
        "--set curated.cycles.0.epochs=3 (repeatable)",
    )
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
