"""Tiny model packages for tests: untrained quarter-width nets, seconds to build and
nothing to train."""

from __future__ import annotations

from pathlib import Path

VOCAB = ("Bark", "Run")


def write_tiny_package(root: Path, seed: int, vocab: tuple[str, ...] = VOCAB) -> Path:
    """A one-fold model package on ``vocab`` in ``root/model``; equal seeds, equal files.

    The net is the debug preset's, with random weights from ``seed``.
    """
    import torch

    from audiotag.config import load_config
    from audiotag.inference.predict import save_model
    from audiotag.inference.tagging import write_package
    from audiotag.training.batches import Normalizer
    from audiotag.training.models import build_model

    config = load_config("debug")
    torch.manual_seed(seed)
    model = build_model(config.model, len(vocab))
    norm = Normalizer(-60.0, 20.0, 60.0)
    save_model(root / "m.pt", model, vocab, config, norm, None, "curated", 0)
    return write_package([root / "m.pt"], root / "model", config.eval)
