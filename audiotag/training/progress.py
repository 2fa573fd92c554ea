"""Progress in the terminal, as fastai shows it: a bar per fold and epoch, and a table.

``EpochBar`` is a fastai callback that draws one tqdm bar per epoch of a fold (batches
done, rate, time left) on a terminal and nothing elsewhere: a log file, a worker's
output and a test's captured stderr get the epoch lines the caller logs instead.
``format_history`` is the end-of-stage table (epoch, train/loss, valid/loss, lwlrap,
time), from a fold's epoch records.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

from fastai.callback.core import Callback
from tqdm import tqdm

# "0" turns the bars off (the CLI's --quiet); unset or anything else: on a terminal.
PROGRESS_ENV = "AUDIOTAG_PROGRESS"


def bars_wanted(stream: IO[str] | None = None) -> bool:
    """Whether bars are drawn: ``stream`` (stderr) is a terminal and they are not off."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get(PROGRESS_ENV, "").strip() == "0":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class EpochBar(Callback):
    """A bar per epoch of one fold: ``noisy fold 2 epoch 3/10`` with batches, rate, ETA.

    Args:
        fold: the stage and fold, as the logs name it (``noisy fold 2``).
        first_epoch: epochs of the stage before this fit (earlier cycles), so that the
            bar counts over the whole stage.
        epochs: the stage's epochs.
        stream: where the bar goes (default stderr); no bar unless it is a terminal.
        refresh: seconds between redraws at most.
    """

    order = 81  # after fastai's SkipToEpoch: a skipped (resumed) epoch draws no bar

    def __init__(
        self,
        fold: str,
        first_epoch: int,
        epochs: int,
        stream: IO[str] | None = None,
        refresh: float = 0.5,
    ) -> None:
        # (not `name`: fastai's Callback has that property)
        self.fold, self.first_epoch, self.epochs = fold, first_epoch, epochs
        self.stream = sys.stderr if stream is None else stream
        self.enabled, self.refresh = bars_wanted(self.stream), refresh
        self.bar: tqdm | None = None

    def before_train(self) -> None:
        if not self.enabled:
            return
        self._close()  # a bar left by an epoch an exception ended
        epoch = self.first_epoch + self.epoch + 1
        self.bar = tqdm(
            total=len(self.dl),
            desc=f"{self.fold} epoch {epoch}/{self.epochs}",
            unit="batch",
            file=self.stream,
            leave=False,  # the epoch's line (logged) replaces it
            # A terminal that reports no width (`script` without one) would get no bar.
            dynamic_ncols=_width(self.stream) > 0,
            ncols=None if _width(self.stream) > 0 else 100,
            mininterval=self.refresh,
        )

    def after_batch(self) -> None:
        if self.bar is not None and self.training:
            self.bar.set_postfix_str(f"loss {float(self.learn.loss.detach()):.4f}", refresh=False)
            self.bar.update(1)

    def after_train(self) -> None:
        self._close()

    def after_fit(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _width(stream: IO[str]) -> int:
    """The terminal's columns, 0 when it says none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def format_history(history: Iterable[Mapping[str, Any]]) -> str:
    """fastai's end-of-fit table from a fold's epoch records (`EpochRecord` as dicts):
    one row per epoch; ``-`` where an epoch was not scored (``valid_every``)."""
    heads = ["epoch", "train/loss", "valid/loss", "lwlrap", "time"]
    rows = [
        [
            str(rec["epoch"]),
            _number(rec["train_loss"]),
            _number(rec["valid_loss"]),
            _number(rec["valid_lwlrap"]),
            _clock(rec["seconds"]),
        ]
        for rec in history
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
