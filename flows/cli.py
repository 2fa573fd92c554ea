"""The ``audiotag`` command line: the entry layer above the flows."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any


def _print_summary(summary: dict[str, Any]) -> None:
    print("\naudiotag run", summary["run_name"])
    columns = [*summary["stages"], "baseline"]
    heads = [f"{c} lwlrap" for c in columns]
    widths = [max(12, len(h)) for h in heads]
    print(f"{'fold':>6}" + "".join(f"  {h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for row in summary["folds"]:
        cells = ["-" if row.get(c) is None else f"{row[c]:.4f}" for c in columns]
        print(
            f"{row['fold']:>6}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )

    def fmt(x: float | None) -> str:
        return "n/a (no test labels)" if x is None else f"{x:.4f}"

    base = summary["baseline"]
    print(f"\n{'':30}{'network':>10}  {'baseline':>10}")
    oof_label = f"out-of-fold lwlrap ({summary['stages'][-1]}):"
    print(f"{oof_label:30}{fmt(summary['oof_lwlrap']):>10}  {fmt(base['oof_lwlrap']):>10}")
    if summary["test_lwlrap"] is None:
        print(f"{'test lwlrap:':30}n/a (no test labels)")
    else:
        print(
            f"{'test lwlrap:':30}{fmt(summary['test_lwlrap']):>10}  {fmt(base['test_lwlrap']):>10}"
        )
    print("  (baseline: logistic regression on each clip's log-mel mean and std)")
    for reason in summary.get("not_scored", []):
        print(f"  {reason}")
    print(summary["verdict"])
    print(f"files kept / rejected:        {summary['kept']} / {summary['rejected']}")
    print(f"submission:   {summary['submission'] or 'none (no test set)'}")
    print(f"scores:       {summary['scores']}")
    print(f"model:        {summary['model']}")
    print(f"  tag audio:  audiotag tag PATH... --model {summary['model']}")
    print(f"MLflow run:   {summary['mlflow_run_id']} in {summary['mlflow_uri']}")
    print(f"  browse:     mlflow ui --backend-store-uri {summary['mlflow_uri']} --host 127.0.0.1")


def cmd_demo_data(args: argparse.Namespace) -> int:
    from audiotag.sources.demo import write_demo_dataset

    path = write_demo_dataset(Path(args.dir), seed=args.seed, scale=args.scale)
    print(path)
    return 0


def check_run(source: str, workdir: str, preset: str, overrides: dict[str, Any]) -> None:
    """Everything a run needs, checked in about a second, before the flow's server starts:
    the settings, the work dir (writable, room), the tracking store, the source and its
    CSVs. Raises `UsageError` (or ValueError for settings) naming the first cause."""
    from audiotag.config import load_config
    from audiotag.steps.preflight import check_source, check_workdir
    from audiotag.steps.workspace import Workspace
    from audiotag.tracking.store import check_tracking_store

    config = load_config(preset, overrides)
    ws = Workspace.at(workdir)
    check_workdir(ws)
    check_tracking_store(os.environ.get("MLFLOW_TRACKING_URI") or ws.tracking_uri)
    check_source(source, config)


def cmd_run(args: argparse.Namespace) -> int:
    from audiotag.config import parse_override

    try:
        overrides = dict(parse_override(o) for o in args.set)
        check_run(args.source, args.workdir, args.preset, overrides)
    except ValueError as err:  # settings that do not validate (UsageErrors go to main)
        if args.debug:
            raise
        print(f"audiotag: {err}", file=sys.stderr)
        return 2
    from audiotag.steps.workspace import Workspace

    ws = Workspace.at(args.workdir)
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(ws.results))
    os.environ.setdefault("MLFLOW_TRACKING_URI", ws.tracking_uri)
    # The temporary server's telemetry heartbeat fights the flow for its SQLite
    # file and logs 'database is locked' tracebacks; nothing is lost without it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Library progress (a Kaggle download's bytes and rate) in the CLI and Prefect logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "audiotag")
    logging.getLogger("audiotag").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    from audiotag.stopping import stop_requested
    from flows.train import train_flow

    start_server_deaf_to_ctrl_c()
    stop_on_interrupt()
    quiet_stop_tracebacks()
    try:
        summary = train_flow(
            source=args.source,
            workdir=str(ws.root),
            preset=args.preset,
            overrides=overrides,
            dask_address=args.dask_address,
        )
    except Exception:
        if not stop_requested():
            raise
        print(RESUME_LINE, file=sys.stderr)
        return INTERRUPTED
    _print_summary(summary)
    return 0


# The exit status of a program stopped by SIGINT (128 + 2), as shells report it.
INTERRUPTED = 130
RESUME_LINE = (
    "audiotag: stopped (Ctrl-C). To resume, run the same command again: finished folds "
    "come from the cache, a stopped fold continues from its last checkpoint"
)


def stop_on_interrupt() -> None:
    """Ctrl-C asks the run to stop: running folds stop before their next batch, and the
    run ends with `RESUME_LINE`. A second Ctrl-C exits at once (the checkpoints are
    written atomically, so nothing half-written is left to trust)."""
    import signal

    from audiotag.stopping import request_stop, stop_requested

    def on_interrupt(signum: int, frame: object) -> None:
        if stop_requested():
            print(RESUME_LINE, file=sys.stderr, flush=True)
            from prefect.server.api.server import SubprocessASGIServer

            SubprocessASGIServer().stop()  # exiting at once skips the atexit that would
            os._exit(INTERRUPTED)
        request_stop()

    signal.signal(signal.SIGINT, on_interrupt)


def start_server_deaf_to_ctrl_c() -> None:
    """Starts the run's temporary Prefect server (when no API URL is set) so that Ctrl-C
    does not reach it.

    A terminal sends Ctrl-C's SIGINT to the whole foreground process group, the server
    Prefect starts among it: the server shut down at once and the stopping flow hung on
    its API. The server is started here, as the flow would start it, with SIGINT blocked
    in this thread: a child inherits the blocked mask, and the server's own handlers never
    see the signal. It still stops on SIGTERM at exit.
    """
    import signal

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        SubprocessASGIServer().start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _DropStopTraceback(logging.Filter):
    """A stopped fold's failure is logged as its one line, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from audiotag.stopping import StopRequested

        if record.exc_info and isinstance(record.exc_info[1], StopRequested):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_stop_tracebacks() -> None:
    """Puts `_DropStopTraceback` on every handler of Prefect's loggers (once configured)."""
    loggers = [logging.getLogger()] + [
        lg
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and name.split(".")[0] == "prefect"
    ]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if not any(isinstance(f, _DropStopTraceback) for f in handler.filters):
            handler.addFilter(_DropStopTraceback())


def _write_tags(rows: list, fmt: str, out: Any) -> None:
    import csv
    import json

    if fmt == "csv":
        from audiotag.storage import safe_csv_cell as safe

        writer = csv.writer(out)
        writer.writerow(["path", "rank", "label", "probability", "error"])
        for r in rows:
            if r.error is not None:
                writer.writerow([safe(r.path), "", "", "", safe(r.error)])
            for rank, (label, p) in enumerate(r.tags, 1):
                writer.writerow([safe(r.path), rank, safe(label), f"{p:.6f}", ""])
    elif fmt in ("json", "jsonl"):
        objs = [
            {
                "path": r.path,
                "error": r.error,
                "tags": [{"label": label, "probability": round(p, 6)} for label, p in r.tags],
            }
            for r in rows
        ]
        if fmt == "json":
            json.dump(objs, out, indent=2)
            out.write("\n")
        else:
            for obj in objs:
                out.write(json.dumps(obj) + "\n")
    else:
        width = max((len(r.path) for r in rows), default=4)
        for r in rows:
            text = (
                r.error and f"ERROR: {r.error}" or "  ".join(f"{lb} ({p:.2f})" for lb, p in r.tags)
            )
            out.write(f"{r.path:<{width}}  {text}\n")


def cmd_tag(args: argparse.Namespace) -> int:
    from audiotag.inference.tagging import Ensemble, find_audio, tag_files

    try:
        if args.model.startswith(("models:/", "runs:/")):
            from audiotag.tracking.registry import load_ensemble

            ens = load_ensemble(args.model)
        else:
            ens = Ensemble(Path(args.model), args.device)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"audiotag: {err}", file=sys.stderr)
        return 2
    files = find_audio([Path(p) for p in args.paths])
    top_k = None if args.all or args.threshold is not None else args.top_k
    progress = None
    if len(files) > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=len(files), unit="file", file=sys.stderr)
    rows = list(
        tag_files(ens, files, top_k, args.threshold, on_file=progress.update if progress else None)
    )
    if progress:
        progress.close()
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            _write_tags(rows, args.format, out)
    else:
        _write_tags(rows, args.format, sys.stdout)
    failed = sum(r.error is not None for r in rows)
    if failed:
        print(f"audiotag: {failed} of {len(rows)} files could not be tagged", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from audiotag.config import PRESETS

    parser = argparse.ArgumentParser(prog="audiotag", description=__doc__)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an expected error (by default: one line naming its cause)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="write the synthetic demo dataset (FAT2019 layout)")
    demo.add_argument("dir", help="output directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--scale", type=float, default=1.0, help="size multiplier")
    demo.set_defaults(func=cmd_demo_data)

    run = sub.add_parser("run", help="train the 5-fold ensemble as a Prefect flow")
    run.add_argument(
        "--source",
        default="demo",
        help="'demo', 'kaggle' (through the kaggle client), a dataset directory "
        "or the competition zip",
    )
    run.add_argument("--preset", default="demo", choices=list(PRESETS))
    run.add_argument("--workdir", default="audiotag-work")
    run.add_argument(
        "--dask-address",
        help="train the folds on this Dask cluster (tcp://host:8786), one 'GPU' resource each",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field, e.g. --set noisy.batch_size=32 "
        "--set curated.cycles.0.epochs=3 (repeatable)",
    )
    run.set_defaults(func=cmd_run)

    tag = sub.add_parser("tag", help="tag audio files or folders with a trained ensemble")
    tag.add_argument("paths", nargs="+", help="audio files or folders (searched recursively)")
    tag.add_argument(
        "--model",
        required=True,
        help="a model package (runs/<run>/model), a model file, or a work dir",
    )
    tag.add_argument("--top-k", type=int, default=3, help="labels per file (default 3)")
    tag.add_argument("--threshold", type=float, help="every label at or above this probability")
    tag.add_argument("--all", action="store_true", help="every label with its probability")
    tag.add_argument("--format", default="table", choices=["table", "csv", "json", "jsonl"])
    tag.add_argument("--output", help="write here instead of the terminal")
    tag.add_argument("--device", default="cpu", help="cpu or cuda:N")
    tag.set_defaults(func=cmd_tag)
    return parser


# A write that failed for want of space or permission: the cause is the line to show.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG})


def main(argv: list[str] | None = None) -> int:
    """Runs a command; an expected error is one line on stderr (``--debug``: its traceback)."""
    from audiotag.errors import UsageError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        if args.debug:
            raise
        print(f"audiotag: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if args.debug or err.errno not in DISK_ERRNOS:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"audiotag: {err.strerror}{where} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
