"""Per-epoch checkpoints of a stage's fold: written atomically, only the newest kept."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastcore.foundation import L
from torch import nn

from audiotag.storage import write_atomic

CHECKPOINT_RE = re.compile(r"epoch-(\d+)\.pt$")
logger = logging.getLogger("audiotag.training")


class CheckpointError(OSError):
    """A checkpoint could not be written (disk full, say); the previous one is intact."""


def latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    """(epoch, path) of the newest checkpoint in ``ckpt_dir``, or None."""
    found = [
        (int(m.group(1)), p)
        for p in ckpt_dir.glob("epoch-*.pt")
        if (m := CHECKPOINT_RE.search(p.name))
    ]
    return max(found) if found else None


def _plain(obj: Any) -> Any:
    """fastai containers -> builtins, so a checkpoint loads with ``weights_only=True``."""
    if isinstance(obj, L | list | tuple):
        return [_plain(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


@dataclass
class Resumed:
    """What a checkpoint gives back: the epochs done, the history, the optimiser state."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    opt_state: dict | None = None
    scaler_state: dict | None = None  # the fp16 loss scaler's (None: none was saved)


@dataclass(frozen=True)
class Checkpointer:
    """Writes and reads one fold's checkpoints in ``directory``; ``what`` names the fold."""

    directory: Path
    what: str

    def save(
        self,
        epoch: int,
        model: nn.Module,
        opt_state: dict,
        history: list,
        lrs: list,
        scaler_state: dict | None = None,
    ) -> None:
        """Writes epoch ``epoch``'s checkpoint, then removes the older ones.

        ``scaler_state``: the mixed-precision loss scaler's ``state_dict``, if one trains.

        Raises:
            CheckpointError: the write failed; the previous checkpoint is intact.
        """
        payload = {
            "epoch": epoch,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "opt": _plain(opt_state),
            "history": history,
            "lrs": lrs,
            "scaler": scaler_state,
        }
        path = self.directory / f"epoch-{epoch:04d}.pt"
        try:
            write_atomic(path, lambda tmp: torch.save(payload, tmp))
        except (OSError, RuntimeError) as err:
            previous = latest_checkpoint(self.directory)
            kept = f"epoch {previous[0]} is intact" if previous else "there is none"
            raise CheckpointError(
                f"{path}: could not write the checkpoint of {self.what} epoch {epoch} ({err}); "
                f"the previous checkpoint: {kept}. Free disk space and re-run: training "
                "continues from the previous checkpoint."
            ) from err
        for old in self.directory.glob("epoch-*.pt"):  # keep only the newest
            if old != path:
                old.unlink(missing_ok=True)

    def restore(self, model: nn.Module) -> Resumed:
        """Loads the newest checkpoint that loads into ``model``; nothing if there is none.

        A checkpoint that fails to load (truncated, corrupt, another network's) is moved
        aside to ``<name>.corrupt`` for inspection and said so in the log; the fold goes
        on from the next older one, or from scratch.
        """
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        while (found := latest_checkpoint(self.directory)) is not None:
            epoch, path = found
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                model.load_state_dict(state["model"])
                return Resumed(
                    epoch,
                    list(state["history"]),
                    list(state["lrs"]),
                    state["opt"],
                    state.get("scaler"),
                )
            except Exception as err:  # noqa: BLE001 - any failure to load is the file's
                model.load_state_dict(initial)  # a failed load may have copied some tensors
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                before = latest_checkpoint(self.directory)
                goes_on = f"from epoch {before[0]}" if before else "from scratch"
                logger.warning(
                    "%s: the checkpoint %s does not load (%s: %s); moved aside to %s, "
                    "training goes on %s",
                    self.what,
                    path,
                    type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "",
                    aside.name,
                    goes_on,
                )
        return Resumed()

    def clear(self) -> None:
        """Removes the checkpoints once the fold's model is written; keeps the ``.corrupt``."""
        for path in self.directory.glob("epoch-*.pt"):
            path.unlink(missing_ok=True)
        if self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()
