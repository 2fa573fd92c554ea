"""Deterministic synthetic dataset packaged exactly like Kaggle's FAT2019 download.

The tool's embedded demo must run offline and in seconds, yet exercise every code
path the real "Freesound Audio Tagging 2019" data does: the competition zip with
inner per-split zips, ``fname,labels`` CSVs with comma-joined multi-labels, a
noisy split with background noise and wrong labels, the curated files Kaggle
users know to be corrupt, and a few genuinely broken files. Ten FAT2019 classes
are rendered as synthetic sounds that occupy different frequency regions and
temporal patterns, so a small CNN on 64-band log-mel spectrograms can learn them.

:mod:`.synthesis` makes the sounds, :mod:`.clips` mixes them into clips and
:mod:`.packaging` zips the splits and CSVs. One seed always yields identical
bytes.

At ``scale=1`` the audio is about an hour of 44.1 kHz 16-bit sound (the noisy
split alone is 500 clips of 3-8 s), so the zip is about 220 MB and takes about
10 s on two cores; use a smaller ``scale`` for tests.
"""

from audiotag.sources.demo.packaging import (
    COMPETITION,
    KAGGLE_CORRUPT_CURATED,
    TRUNCATED_HEADER_BYTES,
    write_demo_dataset,
)
from audiotag.sources.demo.synthesis import DEMO_CLASSES, SAMPLE_RATE

__all__ = [
    "COMPETITION",
    "DEMO_CLASSES",
    "KAGGLE_CORRUPT_CURATED",
    "SAMPLE_RATE",
    "TRUNCATED_HEADER_BYTES",
    "write_demo_dataset",
]
