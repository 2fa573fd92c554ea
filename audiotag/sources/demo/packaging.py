"""The demo packaged exactly like Kaggle's FAT2019 download.

The competition zip holds inner per-split zips and ``fname,labels`` CSVs with
comma-joined multi-labels; the noisy split has background noise and wrong
labels, and the curated split the files Kaggle users know to be corrupt plus a
few genuinely broken ones. The clips come from :mod:`.clips`.

Everything is drawn from one ``np.random.default_rng(seed)`` stream and zipped
with fixed timestamps in sorted order, so one seed always yields identical bytes.
The WAVs are deflated inside the inner zips (as in Kaggle's download), and the
outer zip stores those inner zips as they are and deflates only the CSVs.
"""

import csv
import io
import queue
import threading
import zipfile
from pathlib import Path
from typing import Self

import numpy as np

# One definition of each: the pipeline drops these names, so the demo holds them.
from audiotag.data.layout import COMPETITION
from audiotag.data.layout import KAGGLE_CORRUPT_FILES as KAGGLE_CORRUPT_CURATED
from audiotag.sources.demo.clips import _render_clip, _wav_bytes
from audiotag.sources.demo.synthesis import DEMO_CLASSES, SAMPLE_RATE, _NoiseBank
from audiotag.storage import atomic_path

# The curated split's truncated file keeps only this much of a valid WAV: the
# RIFF header and the start of the fmt chunk, so no decoder can open it.
TRUNCATED_HEADER_BYTES = 20

_N_CURATED = 250
_N_NOISY = 500
_N_TEST = 150
_CURATED_SECONDS = (0.5, 4.0)
_NOISY_SECONDS = (2.0, 6.0)
_TEST_SECONDS = (0.5, 5.0)
_LABEL_COUNT_P = (0.67, 0.25, 0.08)  # probabilities of 1, 2, 3 labels per clip
_NOISY_SNR_DB = (5.0, 20.0)
_NOISY_WRONG_LABEL_FRACTION = 0.2
# Any fixed date works; this one is when FAT2019 opened, and zip timestamps
# must not come from the clock or the bytes would differ between runs.
_ZIP_DATE_TIME = (2019, 4, 1, 0, 0, 0)


def _draw_labels(rng: np.random.Generator, primary: str) -> list[str]:
    """Returns ``primary`` plus 0-2 other distinct classes."""
    n_labels = int(rng.choice([1, 2, 3], p=_LABEL_COUNT_P))
    others = [c for c in DEMO_CLASSES if c != primary]
    extra = rng.choice(others, size=n_labels - 1, replace=False).tolist()
    return [primary, *extra]


def _corrupt_labels(rng: np.random.Generator, labels: list[str]) -> list[str]:
    """Replaces one label by a class the clip does not contain."""
    wrong = list(labels)
    idx = int(rng.integers(len(wrong)))
    candidates = [c for c in DEMO_CLASSES if c not in labels]
    wrong[idx] = str(rng.choice(candidates))
    return wrong


class _NameDrawer:
    """Draws unique 8-hex-digit file names, as Kaggle's are."""

    def __init__(self, rng: np.random.Generator, reserved: tuple[str, ...]) -> None:
        self._rng = rng
        self._used = set(reserved)

    def __call__(self) -> str:
        while True:
            name = f"{int(self._rng.integers(0, 2**32)):08x}.wav"
            if name not in self._used:
                self._used.add(name)
                return name


def _broken_files(rng: np.random.Generator, names: _NameDrawer) -> dict[str, bytes]:
    """Returns the broken and known-corrupt files that go into the curated split."""
    valid = _wav_bytes(np.zeros(SAMPLE_RATE // 10))
    broken = {
        names(): b"",
        names(): valid[:TRUNCATED_HEADER_BYTES],
        names(): _wav_bytes(np.zeros(SAMPLE_RATE)),
    }
    for name in KAGGLE_CORRUPT_CURATED:
        n = int(rng.uniform(0.2, 0.5) * SAMPLE_RATE)
        broken[name] = _wav_bytes(0.1 * rng.uniform(-1.0, 1.0, n))
    return broken


# --------------------------------------------------------------------------- packaging


def _zip_info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    info.compress_type = compress_type
    info.create_system = 3  # fixed, so the archive does not depend on the host OS
    info.external_attr = 0o644 << 16
    return info


class _BackgroundZip:
    """Builds a deflated zip in memory on a worker thread.

    Deflating the audio takes about as long as synthesising it. zlib releases
    the GIL, so compressing clip ``i`` while the caller renders clip ``i + 1``
    roughly halves the wall time on two cores. Entries are written in the order
    they are added, which keeps the bytes deterministic.
    """

    def __init__(self, compress_type: int = zipfile.ZIP_DEFLATED) -> None:
        self._compress_type = compress_type
        self._buf = io.BytesIO()
        # Bounded so that a slow writer holds back rendering instead of
        # letting every rendered clip pile up in memory.
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-zip", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error

    def add(self, name: str, data: bytes) -> None:
        """Queues one entry; blocks while the writer is more than 16 entries behind."""
        self._queue.put((name, data))

    def getvalue(self) -> bytes:
        """Returns the finished archive; valid only after the ``with`` block."""
        return self._buf.getvalue()

    def _run(self) -> None:
        try:
            with zipfile.ZipFile(self._buf, "w") as zf:
                while (item := self._queue.get()) is not None:
                    name, data = item
                    zf.writestr(_zip_info(name, self._compress_type), data, compresslevel=1)
        except BaseException as exc:  # re-raised in the caller's thread by __exit__
            self._error = exc
            # Keep consuming so the producer never blocks on a full queue.
            while self._queue.get() is not None:
                pass


def _make_split(
    rng: np.random.Generator,
    noise: _NoiseBank,
    names: _NameDrawer,
    n_clips: int,
    seconds: tuple[float, float],
    snr_db: tuple[float, float] | None = None,
    wrong_label_fraction: float = 0.0,
    extra_files: dict[str, bytes] | None = None,
    compress_type: int = zipfile.ZIP_DEFLATED,
) -> tuple[bytes, dict[str, list[str]]]:
    """Renders a split and zips it.

    Args:
        rng: Shared random stream.
        noise: Noise source for events and background.
        names: Unique file-name source shared by all splits.
        n_clips: Number of synthesised clips.
        seconds: Clip duration range.
        snr_db: Background-noise SNR range; ``None`` for clean clips.
        wrong_label_fraction: Share of clips whose label set gets one wrong label.
        extra_files: Ready-made files (the broken ones) to add to the zip; each
            gets one random label in the returned CSV labels.
        compress_type: How the WAVs are stored in the zip.

    Returns:
        ``(zip_bytes, labels)``: the split's zip with WAVs at its root, and the
        label lists keyed by file name, for every file in the zip.
    """
    extra_files = extra_files or {}
    # Round-robin primaries keep every class present even at small scales.
    primaries = {names(): DEMO_CLASSES[i % len(DEMO_CLASSES)] for i in range(n_clips)}
    labels = {name: [str(rng.choice(DEMO_CLASSES))] for name in extra_files}
    # Rendering in sorted-name order lets each clip go straight into the zip,
    # whose entries must be sorted for reproducible bytes.
    with _BackgroundZip(compress_type) as archive:
        for name in sorted(primaries.keys() | extra_files.keys()):
            if name in extra_files:
                archive.add(name, extra_files[name])
                continue
            true_labels = _draw_labels(rng, primaries[name])
            archive.add(name, _wav_bytes(_render_clip(rng, noise, true_labels, seconds, snr_db)))
            wrong = rng.random() < wrong_label_fraction
            labels[name] = _corrupt_labels(rng, true_labels) if wrong else true_labels
    return archive.getvalue(), labels


def _labels_csv(labels: dict[str, list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["fname", "labels"])
    for name in sorted(labels):
        writer.writerow([name, ",".join(sorted(labels[name]))])
    return buf.getvalue().encode()


def _sample_submission_csv(fnames: list[str]) -> bytes:
    classes = sorted(DEMO_CLASSES)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["fname", *classes])
    for name in sorted(fnames):
        writer.writerow([name, *([0] * len(classes))])
    return buf.getvalue().encode()


def _render_splits(
    rng: np.random.Generator, scale: float, compress_type: int
) -> tuple[dict[str, bytes], dict[str, dict[str, list[str]]]]:
    """Renders the three splits, in the stream's fixed order.

    Returns:
        ``(inner_zips, labels)``: each split's zip keyed by its member name, and
        its labels keyed by the split's name.
    """
    names = _NameDrawer(rng, KAGGLE_CORRUPT_CURATED)
    noise = _NoiseBank(rng)
    # A positive scale still yields at least one clip per split, so no inner
    # zip or CSV is ever empty.
    n_curated = max(1, round(_N_CURATED * scale))
    n_noisy = max(1, round(_N_NOISY * scale))
    n_test = max(1, round(_N_TEST * scale))

    curated_zip, curated_labels = _make_split(
        rng,
        noise,
        names,
        n_curated,
        _CURATED_SECONDS,
        extra_files=_broken_files(rng, names),
        compress_type=compress_type,
    )
    noisy_zip, noisy_labels = _make_split(
        rng,
        noise,
        names,
        n_noisy,
        _NOISY_SECONDS,
        _NOISY_SNR_DB,
        _NOISY_WRONG_LABEL_FRACTION,
        compress_type=compress_type,
    )
    test_zip, test_labels = _make_split(
        rng, noise, names, n_test, _TEST_SECONDS, compress_type=compress_type
    )
    inner_zips = {
        "train_curated.zip": curated_zip,
        "train_noisy.zip": noisy_zip,
        "test.zip": test_zip,
    }
    labels = {"train_curated": curated_labels, "train_noisy": noisy_labels, "test": test_labels}
    return inner_zips, labels


def _label_csvs(labels: dict[str, dict[str, list[str]]]) -> dict[str, bytes]:
    """The competition's CSVs, plus the test answers the demo needs for scoring."""
    return {
        "train_curated.csv": _labels_csv(labels["train_curated"]),
        "train_noisy.csv": _labels_csv(labels["train_noisy"]),
        "sample_submission.csv": _sample_submission_csv(list(labels["test"])),
        "test_labels.csv": _labels_csv(labels["test"]),
    }


def _write_competition_zip(
    path: Path, csvs: dict[str, bytes], inner_zips: dict[str, bytes]
) -> None:
    """Writes the outer zip: CSVs deflated, inner zips stored, in sorted order."""
    # A temporary file renamed last, so an interrupted run never leaves a half-written
    # zip under the name a later run would trust; a failed write (a full disk) removes it.
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(csvs | inner_zips):
            if name in csvs:
                zf.writestr(_zip_info(name, zipfile.ZIP_DEFLATED), csvs[name])
            else:
                # Already deflated per WAV (or stored by request); deflating here
                # would gain nothing.
                zf.writestr(_zip_info(name, zipfile.ZIP_STORED), inner_zips[name])


def write_demo_dataset(
    out_dir: Path, seed: int = 0, scale: float = 1.0, deflate: bool = True
) -> Path:
    """Writes a synthetic FAT2019-shaped competition zip.

    The archive holds ``train_curated.csv``, ``train_noisy.csv``,
    ``sample_submission.csv``, ``test_labels.csv`` (the test answers, which
    Kaggle never published but the demo needs for scoring) and the inner zips
    ``train_curated.zip``, ``train_noisy.zip`` and ``test.zip`` with WAV files at
    their root. ``train_curated`` also lists one empty file, one with a
    truncated header, one all-silent file and the six clips named in
    :data:`KAGGLE_CORRUPT_CURATED`.

    Args:
        out_dir: Directory to write into; created if missing.
        seed: Seed of the single random stream; equal seeds give identical bytes.
        scale: Multiplies the clip counts (250 curated, 500 noisy, 150 test).
        deflate: Deflate the WAVs as Kaggle's download does; ``False`` stores them
            (the same audio; about twice as fast to write and to unpack, for
            benchmarks on large synthetic datasets).

    Returns:
        Path of ``<out_dir>/freesound-audio-tagging-2019.zip``.

    Raises:
        ValueError: If ``scale`` is not positive.
    """
    if not scale > 0:  # also rejects NaN
        raise ValueError(f"scale must be > 0, got {scale!r}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    wavs = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    inner_zips, labels = _render_splits(rng, scale, wavs)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{COMPETITION}.zip"
    _write_competition_zip(path, _label_csvs(labels), inner_zips)
    return path
