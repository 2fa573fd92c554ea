"""The ``audiotag`` command line: the entry layer above the flows."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Any

from flows.interrupt import (
    INTERRUPTED,
    RESUME_LINE,
    quiet_stop_tracebacks,
    start_server_deaf_to_ctrl_c,
    stop_on_interrupt,
)
from flows.output import print_summary, route_logs_around_bars
from flows.tag_command import cmd_tag, positive_int, probability_arg, seconds_arg

PURPOSE = "audiotag: train and use multi-label audio taggers (the FAT2019 recipe)."
EXAMPLES = """\
examples:
  audiotag run --source demo --preset demo --workdir demo-work    # the demo, end to end
  audiotag run --source data/ --set curated.cycles.0.epochs=20     # your own audio
  audiotag config show demo                                        # every setting, its key
  audiotag tag my-recordings/ --model demo-work                    # tag with the newest run
  audiotag <command> --help                                        # a command's options
"""


def _print_problems(err: ValueError) -> None:
    """One ``audiotag:`` line per problem (a `ConfigError` has one per field)."""
    for line in str(err).splitlines():
        print(f"audiotag: {line}", file=sys.stderr)


def cmd_config_show(args: argparse.Namespace) -> int:
    from audiotag.config import load_config, parse_override
    from audiotag.config.describe import describe_fields

    try:
        config = load_config(args.preset, dict(parse_override(o) for o in args.set))
    except ValueError as err:
        if args.debug:
            raise
        _print_problems(err)
        return 2
    rows = describe_fields(config)
    key_w = max(len(r.key) for r in rows)
    val_w = min(24, max(len(r.value) for r in rows))
    print(f"preset {args.preset}: change a field with --set KEY=VALUE (a JSON value)\n")
    print(f"{'KEY':<{key_w}}  {'VALUE':<{val_w}}  DESCRIPTION")
    for r in rows:
        value = r.value if len(r.value) <= val_w else r.value + "\n" + " " * (key_w + val_w + 4)
        print(f"{r.key:<{key_w}}  {value:<{val_w}}  {r.description}".rstrip())
    return 0


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


def _say(args: argparse.Namespace, text: str) -> None:
    """A status line on stdout, at once (none with --quiet)."""
    if not args.quiet:
        print(text, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from audiotag.config import parse_override

    _say(args, f"audiotag run: preset {args.preset}, source {args.source}, work dir {args.workdir}")
    try:
        overrides = dict(parse_override(o) for o in args.set)
        check_run(args.source, args.workdir, args.preset, overrides)
    except ValueError as err:  # settings that do not validate (UsageErrors go to main)
        if args.debug:
            raise
        _print_problems(err)
        return 2
    from audiotag.steps.workspace import Workspace
    from flows.server import STARTUP_ENV, startup_failure, use_prefect_server

    api = use_prefect_server(args.prefect_api)  # before prefect is imported: read once
    if api:
        _say(args, f"checked; running on the Prefect server at {api}")
    else:
        wait = os.environ[STARTUP_ENV]
        _say(
            args,
            f"checked; starting Prefect's temporary server (up to {wait} s; "
            "--prefect-api URL uses a running one)",
        )
    # --quiet: warnings and the final table; --verbose: every library's debug lines too.
    level = "WARNING" if args.quiet else "DEBUG" if args.verbose else None
    if level:
        os.environ["PREFECT_LOGGING_LEVEL"] = level
    if args.quiet:
        from audiotag.training.progress import PROGRESS_ENV

        os.environ[PROGRESS_ENV] = "0"
    ws = Workspace.at(args.workdir)
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(ws.results))
    os.environ.setdefault("MLFLOW_TRACKING_URI", ws.tracking_uri)
    # The temporary server's telemetry heartbeat fights the flow for its SQLite
    # file and logs 'database is locked' tracebacks; nothing is lost without it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's first-import telemetry notice (and its telemetry) in audiotag's runs;
    # DO_NOT_TRACK=0 keeps them.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Library progress (a Kaggle download's bytes and rate) in the CLI and Prefect logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "audiotag")
    logging.getLogger("audiotag").setLevel(
        logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    )
    if not args.verbose:  # "Creating initial MLflow database tables..." on a new work dir
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    from audiotag.stopping import stop_requested
    from flows.train import train_flow

    try:
        start_server_deaf_to_ctrl_c()
    except RuntimeError as err:
        failure = startup_failure(err)
        if failure is None:
            raise
        raise failure from err
    stop_on_interrupt()
    quiet_stop_tracebacks()
    route_logs_around_bars()
    try:
        summary = train_flow(
            source=args.source,
            workdir=str(ws.root),
            preset=args.preset,
            overrides=overrides,
            dask_address=args.dask_address or "",
        )
    except Exception as err:
        if stop_requested():
            print(RESUME_LINE, file=sys.stderr)
            return INTERRUPTED
        failure = startup_failure(err)  # the temporary server, if it died mid-run
        if failure is None:
            raise
        raise failure from err
    print_summary(summary)
    return 0


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default at the end of its help (an option without a value, say
    None, says its default in words there); descriptions and examples as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # None, a flag's False and an empty list say nothing: the help says it in words.
        quiet = default is None or default is False or default == [] or not action.option_strings
        quiet = quiet or default is argparse.SUPPRESS
        if "(default" in text or quiet:
            return text
        return text + " (default: %(default)s)"


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field by its dotted key (JSON value), e.g. --set "
        "noisy.batch_size=32 --set curated.cycles.0.epochs=3; repeatable; "
        "`audiotag config show` lists the keys (default: the preset's values)",
    )


def build_parser() -> argparse.ArgumentParser:
    from audiotag import __version__
    from audiotag.config import PRESETS, SegmentSettings

    parser = argparse.ArgumentParser(
        prog="audiotag", description=PURPOSE, epilog=EXAMPLES, formatter_class=_Help
    )
    parser.add_argument("--version", action="version", version=f"audiotag {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an expected error (by default: one line naming its cause)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, examples: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog="examples:\n" + examples,
            formatter_class=_Help,
        )

    run = command(
        "run",
        "train the 5-fold ensemble as a Prefect flow",
        "  audiotag run --source demo --preset demo --workdir demo-work\n"
        "  audiotag run --source freesound-audio-tagging-2019.zip --preset reference\n"
        "  audiotag run --source data/ --prefect-api http://127.0.0.1:4200/api\n",
    )
    run.add_argument(
        "--source",
        default="demo",
        help="'demo' (synthetic), 'kaggle' (through the kaggle client), a dataset directory "
        "in the FAT2019 layout or the competition zip",
    )
    run.add_argument(
        "--preset",
        default="demo",
        choices=list(PRESETS),
        help="the named settings to start from (`audiotag config show PRESET` shows them)",
    )
    run.add_argument(
        "--workdir",
        default="audiotag-work",
        help="where the data, features, models, runs and the MLflow store go",
    )
    run.add_argument(
        "--dask-address",
        metavar="ADDRESS",
        help="train the folds on this Dask cluster (tcp://host:8786), one 'GPU' resource "
        "each (default: on this machine, several folds at once)",
    )
    run.add_argument(
        "--prefect-api",
        metavar="URL",
        help="run on this Prefect server (http://127.0.0.1:4200/api, as `make server` "
        "starts) instead of a temporary one (default: $PREFECT_API_URL, else temporary)",
    )
    _add_set(run)
    loud = run.add_mutually_exclusive_group()
    loud.add_argument(
        "--quiet", action="store_true", help="print only warnings, errors and the final table"
    )
    loud.add_argument(
        "--verbose", action="store_true", help="also Prefect's and audiotag's debug lines"
    )
    run.set_defaults(func=cmd_run)

    tag = command(
        "tag",
        "tag audio files or folders with a trained ensemble",
        "  audiotag tag my-recordings/ --model demo-work\n"
        "  audiotag tag a.flac b.ogg --model models:/audiotag@champion --format jsonl\n"
        "  audiotag tag field-recording.flac --model demo-work --segments --min-gap 2\n"
        "exit status: 0 every file tagged, 1 some could not be (each gets an error row), "
        "2 a usage error\n",
    )
    tag.add_argument("paths", nargs="+", help="audio files or folders (searched recursively)")
    tag.add_argument(
        "--model",
        required=True,
        help="a model package (runs/<run>/model), a model file, a work dir (its newest "
        "run), or an MLflow model URI (models:/audiotag@champion)",
    )
    tag.add_argument(
        "--top-k",
        type=positive_int,
        metavar="K",
        help="the K most probable labels per file (with --threshold: at most K) "
        "(default: each label above its own threshold, calibrated when the model was trained)",
    )
    tag.add_argument(
        "--threshold",
        type=probability_arg,
        metavar="P",
        help="every label at or above this probability, one threshold for all "
        "(default: each label's own)",
    )
    tag.add_argument("--all", action="store_true", help="every label with its probability")
    tag.add_argument(
        "--segments",
        action="store_true",
        help="also where in each file each label is: segments start, end (s), label, "
        "probability, at each label's own threshold (or --threshold)",
    )
    tag.add_argument(
        "--min-gap",
        type=seconds_arg,
        default=SegmentSettings().min_gap,
        metavar="S",
        help="with --segments: merge a label's segments closer than S seconds",
    )
    tag.add_argument(
        "--min-duration",
        type=seconds_arg,
        default=SegmentSettings().min_duration,
        metavar="S",
        help="with --segments: drop segments shorter than S seconds",
    )
    tag.add_argument(
        "--format", default="table", choices=["table", "csv", "json", "jsonl"], help="output"
    )
    tag.add_argument("--output", help="write here (default: the terminal)")
    tag.add_argument("--device", default="cpu", help="cpu or cuda:N")
    tag.set_defaults(func=cmd_tag)

    config = command(
        "config",
        "show a preset's settings: each field's dotted key, value and meaning",
        "  audiotag config show demo\n"
        "  audiotag config show reference --set curated.cycles.0.epochs=20\n",
    )
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = config_sub.add_parser(
        "show",
        help="print every field with its value, description and dotted key",
        description="Every field of PRESET (with the overrides applied): the dotted key "
        "that --set takes, its value as JSON and what it means.",
        formatter_class=_Help,
    )
    show.add_argument("preset", nargs="?", default="demo", choices=list(PRESETS), help="preset")
    _add_set(show)
    show.set_defaults(func=cmd_config_show)

    demo = command(
        "demo-data",
        "write the synthetic demo dataset (the competition's zip)",
        "  audiotag demo-data demo-source/ --scale 0.5\n",
    )
    demo.add_argument("dir", help="output directory")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthesis")
    demo.add_argument("--scale", type=float, default=1.0, help="size multiplier (clip counts)")
    demo.set_defaults(func=cmd_demo_data)
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
