"""A small dataset in the FAT2019 layout written to disk: CSVs and real tone clips."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from audiotag.data.layout import AUDIO_DIRS, LABEL_CSVS, SAMPLE_SUBMISSION
from tests.helpers.audio import write_tone

# A tone per label, far apart in frequency, so that a tiny model can tell them apart.
FREQS = (300.0, 1200.0, 4800.0, 9000.0)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_layout(
    root: Path,
    vocab: Sequence[str],
    subsets: Mapping[str, Mapping[str, str]],
    audio: bool = True,
    seconds: float = 0.5,
) -> Path:
    """``subsets[subset][fname] = "label,label"`` as the layout's CSVs, each clip a tone
    of its first label's frequency (``audio``), and ``sample_submission.csv`` over the
    test clips with ``vocab`` as its columns. ``sr`` 16 kHz keeps the files small."""
    for subset, clips in subsets.items():
        rows = [[fname, labels] for fname, labels in clips.items()]
        write_csv(root / LABEL_CSVS[subset], ["fname", "labels"], rows)
        folder = root / AUDIO_DIRS[subset]
        folder.mkdir(parents=True, exist_ok=True)
        if not audio:
            continue
        for i, (fname, labels) in enumerate(clips.items()):
            first = labels.split(",")[0]
            k = list(vocab).index(first) if first in vocab else len(FREQS) - 1
            write_tone(
                folder / fname, FREQS[k % len(FREQS)] * (1 + 0.01 * (i % 5)), seconds, sr=16000
            )
    tests = list(subsets.get("test", {}))
    write_csv(
        root / SAMPLE_SUBMISSION, ["fname", *vocab], [[f, *["0"] * len(vocab)] for f in tests]
    )
    return root


def curated_clips(n: int, vocab: Sequence[str], prefix: str = "c") -> dict[str, str]:
    """``n`` curated clips labelled in turn with each label of ``vocab``."""
    return {f"{prefix}{i:03d}.wav": vocab[i % len(vocab)] for i in range(n)}
