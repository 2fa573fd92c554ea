"""Tiny model packages for tests: untrained quarter-width nets, seconds to build and
nothing to train."""

from __future__ import annotations

from pathlib import Path

VOCAB = ("Bark", "Run")


def write_tiny_package(
    root: Path, seed: int, vocab: tuple[str, ...] = VOCAB, thresholds: dict | None = None
) -> Path:
    """A one-fold model package on ``vocab`` in ``root/model``; equal seeds, equal files.

    The net is the debug preset's, with random weights from ``seed``. ``thresholds``:
    ``{label: threshold}`` stored as if calibrated (default: none stored).
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
    calibrated = None
    if thresholds is not None:
        from audiotag.inference.thresholds import Thresholds

        calibrated = Thresholds(thresholds, 0.5, ())
    return write_package([root / "m.pt"], root / "model", config.eval, calibrated)


TONES = {"Low": 500.0, "High": 6000.0}  # two sounds no model confuses


def write_tone_clip(
    path: Path, seconds: float, sounds: list[tuple[str, float, float]], seed: int = 0
) -> Path:
    """A 44.1 kHz clip of noise with `TONES` at ``(label, start, end)`` seconds; the noise
    is loud enough (about 9 dB below a tone) that no silence is cut from it."""
    import numpy as np
    import soundfile as sf

    sr = 44100
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(int(seconds * sr)).astype(np.float32) * 0.1
    for label, start, end in sounds:
        t = np.arange(int(start * sr), min(int(end * sr), len(y)))
        y[t] += 0.4 * np.sin(2 * np.pi * TONES[label] * t / sr + rng.uniform(0, 6.28))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.clip(-1, 1), sr, subtype="PCM_16")
    return path


def write_tone_package(root: Path, clips: int = 24) -> Path:
    """A one-fold package that tells `TONES` apart: the debug net with random weights
    (seed 0) and its last layer fitted (logistic regression, a second) on the windows of
    2 s clips of the low tone, the high tone or noise alone. A model whose labels are
    easy, built without training, so that tests can ask where in a long file each is."""
    import numpy as np
    import torch

    from audiotag.config import load_config
    from audiotag.features.files import file_logmel
    from audiotag.inference.predict import LoadedModel, save_model
    from audiotag.inference.tagging import write_package
    from audiotag.training.batches import Clips, Normalizer
    from audiotag.training.models import build_model

    config = load_config("debug", {"eval.tta": 0})
    vocab = tuple(TONES)
    torch.manual_seed(0)
    net = build_model(config.model, len(vocab))
    save_model(root / "m.pt", net, vocab, config, Normalizer(-40.0, 20.0, 60.0), None, "curated", 0)
    loaded = LoadedModel(root / "m.pt")
    feats, targets = [], []
    for i in range(clips):
        which = [None, "Low", "High"][i % 3]
        sounds = [] if which is None else [(which, 0.0, 2.0)]
        path = write_tone_clip(root / "clips" / f"{i}.wav", 2.0, sounds, seed=i)
        feats.append(file_logmel(path, config.mel))
        targets.append([float(which == label) for label in vocab])
    frames = np.array([len(f) for f in feats], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(frames)[:-1]]).astype(np.int64)
    head = list(loaded.model.children())[-1]
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    clips_ = Clips(offsets, frames, np.array(targets, dtype=np.float32))
    owner, _, _ = loaded.predict_windows(np.concatenate(feats), clips_)
    hook.remove()
    x, y = torch.cat(seen), torch.from_numpy(clips_.targets[owner])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)  # standardised, folded back into the layer below
    w = torch.zeros(x.shape[1], len(vocab), requires_grad=True)
    b = torch.zeros(len(vocab), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        out = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
        out = out + 1e-3 * (w**2).sum()
        out.backward()
        return out

    opt.step(loss)
    raw = torch.cat(seen)
    mean, std = raw.mean(0), raw.std(0) + 1e-6
    with torch.no_grad():
        head.weight.copy_((w / std[:, None]).T)
        head.bias.copy_(b - (mean / std) @ w)
    save_model(root / "m.pt", loaded.model, vocab, config, loaded.norm, None, "curated", 0)
    return write_package([root / "m.pt"], root / "model", config.eval)
