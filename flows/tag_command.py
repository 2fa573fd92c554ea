"""``audiotag tag``: the command that tags files with a trained model, and its option types."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flows.output import write_tags


def _tag_selection(args: argparse.Namespace, has_thresholds: bool) -> dict[str, Any]:
    """`tag_files`' selection keywords from the options: ``--all``, ``--threshold P``
    (with ``--top-k`` as a limit), ``--top-k K``, else each label's own threshold."""
    if args.all:
        return {"top_k": None, "threshold": None}
    if args.threshold is not None:
        return {"top_k": args.top_k, "threshold": args.threshold}
    if args.top_k is not None:
        return {"top_k": args.top_k, "threshold": None}
    if not has_thresholds:
        print(
            "audiotag: this model has no calibrated thresholds (a lone model file, or a "
            "package from before them): the top 3 labels per file",
            file=sys.stderr,
        )
        return {"top_k": 3, "threshold": None}
    return {"top_k": None, "threshold": None, "per_class": True}


def cmd_tag(args: argparse.Namespace) -> int:
    """Exit status: 0 every file tagged, 1 some could not be (every row is written all
    the same), 2 a usage error (no model, nothing to tag)."""
    from audiotag.config import SegmentSettings
    from audiotag.errors import UsageError
    from audiotag.inference.tagging import Ensemble, audio_suffixes, find_audio, tag_files

    for given in map(Path, args.paths):
        if given.is_dir() and not find_audio([given]):
            suffixes = ", ".join(sorted(audio_suffixes())[:6])
            raise UsageError(f"{given}: no audio file in this folder ({suffixes}, ...)")
    try:
        if args.model.startswith(("models:/", "runs:/")):
            from audiotag.tracking.registry import load_ensemble
            from audiotag.tracking.store import model_store_uri

            model_store_uri(args.model)  # what to set, before MLflow makes ./mlflow.db
            ens = load_ensemble(args.model)
        else:
            ens = Ensemble(Path(args.model), args.device)
    except (FileNotFoundError, ValueError, OSError, UsageError) as err:
        print(f"audiotag: {err}", file=sys.stderr)
        return 2
    files = find_audio([Path(p) for p in args.paths])
    selection = _tag_selection(args, ens.thresholds is not None)
    segments = (
        SegmentSettings(min_gap=args.min_gap, min_duration=args.min_duration)
        if args.segments
        else None
    )
    progress = None
    if len(files) > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=len(files), unit="file", file=sys.stderr)
    on_file = progress.update if progress else None
    rows = list(tag_files(ens, files, on_file=on_file, segments=segments, **selection))
    if progress:
        progress.close()
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            write_tags(rows, args.format, out)
    else:
        write_tags(rows, args.format, sys.stdout)
    failed = sum(r.error is not None for r in rows)
    if failed:
        print(f"audiotag: {failed} of {len(rows)} files could not be tagged", file=sys.stderr)
        return 1
    return 0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def probability_arg(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def seconds_arg(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be seconds >= 0, got {text}")
    return value
