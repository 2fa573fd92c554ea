"""The feature store: every file's log-mel computed once, in one memory-mapped array.

The store holds the unclamped dB log-mel of each file's silence-removed signal,
frames as rows: ``data[offset:offset + frames]`` is one clip, shape
``(frames, n_mels)``, so a training crop is one contiguous slice. ``top_db`` is
applied per crop (`audiotag.features.logmel.clamp_top_db`), never per file or per
batch. Each file's features are `audiotag.features.files.file_logmel`'s, the
function tagging uses too.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from audiotag.config import MelSettings
from audiotag.data.schemas import STORE_INDEX_SCHEMA
from audiotag.devices import cpu_cores, flush_denormals
from audiotag.features.files import file_logmel
from audiotag.features.logmel import FLOOR_DB, LogMel
from audiotag.stopping import check_stop

# A zero-padded crop reads as digital silence, as the report's pipeline saw it.
PAD_DB = FLOOR_DB


@dataclass(frozen=True)
class FeatureStore:
    """A built store: ``data`` is ``(total_frames, n_mels)`` float32, memory-mapped."""

    root: Path
    data: np.ndarray
    index: dict[tuple[str, str], tuple[int, int]]  # (subset, fname) -> (offset, frames)

    @classmethod
    def open(cls, root: Path) -> FeatureStore:
        meta = json.loads((root / "store.json").read_text())
        data = np.memmap(
            root / "data.f32",
            dtype=np.float32,
            mode="r",
            shape=(meta["total_frames"], meta["n_mels"]),
        )
        table = pq.read_table(root / "index.parquet").to_pydict()
        index = {
            (s, f): (o, n)
            for f, s, o, n in zip(
                table["fname"], table["subset"], table["offset"], table["frames"], strict=True
            )
        }
        return cls(root, data, index)

    def locate(self, items: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        """``[(subset, fname)]`` -> ``(offsets, frames)`` int64 arrays."""
        pos = np.array([self.index[key] for key in items], dtype=np.int64).reshape(-1, 2)
        return pos[:, 0], pos[:, 1]


def gather_windows(
    data: np.ndarray, offsets: np.ndarray, frames: np.ndarray, starts: np.ndarray, width: int
) -> np.ndarray:
    """Windows of ``width`` frames from clips, padded with `PAD_DB` past a clip's end.

    Returns:
        ``(B, width, n_mels)`` float32.
    """
    steps = np.arange(width, dtype=np.int64)
    pos = starts[:, None] + steps[None, :]
    valid = pos < frames[:, None]
    rows = np.where(valid, offsets[:, None] + pos, 0)
    out = np.asarray(data[rows.ravel()]).reshape(len(starts), width, data.shape[1])
    out[~valid] = PAD_DB
    return out


def gather_windows_torch(
    data: torch.Tensor,
    offsets: torch.Tensor,
    frames: torch.Tensor,
    starts: torch.Tensor,
    width: int,
) -> torch.Tensor:
    """`gather_windows` on tensors, on their device (a GPU-resident store)."""
    steps = torch.arange(width, device=data.device)
    pos = starts[:, None] + steps[None, :]
    valid = pos < frames[:, None]
    rows = torch.where(valid, offsets[:, None] + pos, torch.zeros_like(pos))
    out = data[rows.reshape(-1)].reshape(len(starts), width, data.shape[1])
    return out.masked_fill(~valid[:, :, None], PAD_DB)


def store_on_device(
    data: np.ndarray, device: torch.device, share: float = 0.5
) -> torch.Tensor | None:
    """The whole store copied to a GPU when it takes at most ``share`` of its free memory.

    Crops are then cut on the GPU; the full FAT2019 store (about 12 GB at the
    reference settings) fits on an 80 GB card.
    """
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if data.nbytes > share * free:
        return None
    return torch.from_numpy(np.asarray(data)).to(device)


def build_feature_store(rows: list[dict], data_dir: Path, mel: MelSettings, root: Path) -> Path:
    """Computes every listed file's log-mel into a store at ``root`` (atomically).

    Args:
        rows: metadata rows (``fname``, ``subset``, ``path``, ``nonsilent`` and the
            ``silence_top_db`` that found it, which must be ``mel``'s).
        data_dir: where the rows' relative paths point.
        mel: the mel settings.
        root: the store's directory; built beside it, then renamed into place.

    Raises:
        ValueError: a row's intervals were found at another silence threshold.
        AudioReadError: a file cannot be read, or a row has no non-silent interval.
    """
    if (root / "store.json").exists():
        return root
    for row in rows:
        if row.get("silence_top_db") != mel.silence_top_db:
            raise ValueError(
                f"{row['path']}: its non-silent intervals were found at silence_top_db "
                f"{row.get('silence_top_db')!r}, the mel settings say {mel.silence_top_db!r} "
                "(extract the metadata again with the settings' threshold)"
            )
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_store(rows, data_dir, mel, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, root)
    except OSError:
        # Another run built the same store first: it holds the same features.
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _file_features(
    rows: list[dict], data_dir: Path, mel: MelSettings, workers: int
) -> Iterator[np.ndarray]:
    """Each row's features, in order, computed ``workers`` files at a time.

    One torch thread per file, files side by side: a file's ops are small (an STFT of
    a few hundred frames), and two OpenMP threads on each of them waited on each other
    more than they computed. On the 2-core AMD EPYC at load 12, a 5 s clip's log-mel
    took 25 ms on one thread and 100-170 ms on two; the store build went 20-40x faster
    with this, its output bit for bit the same (bench/RESULTS.md, 2026-12-02).
    """
    local = threading.local()

    def work(row: dict) -> np.ndarray:
        if not hasattr(local, "logmel"):
            torch.get_num_threads()  # keep this thread's own count (DevicePool.lease)
            torch.set_num_threads(1)
            flush_denormals()  # as the calling thread computed (flows set it)
            local.logmel = LogMel(mel)
        check_stop("building the feature store")
        with torch.no_grad():
            return file_logmel(data_dir / row["path"], mel, _intervals(row), logmel=local.logmel)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # At most 4 files per worker ahead of the writer: memory stays a few files'.
        ahead = 4 * workers
        futures = [pool.submit(work, row) for row in rows[:ahead]]
        for i in range(len(rows)):
            feats = futures[i].result()
            futures[i] = None  # type: ignore[call-overload]
            if i + ahead < len(rows):
                futures.append(pool.submit(work, rows[i + ahead]))
            yield feats


def _write_store(
    rows: list[dict], data_dir: Path, mel: MelSettings, out: Path, workers: int | None = None
) -> None:
    """``data.f32``, ``index.parquet`` and ``store.json`` (written last) into ``out``."""
    index: list[dict] = []
    offset = 0
    workers = workers or cpu_cores()
    with open(out / "data.f32", "wb") as f:
        for row, feats in zip(rows, _file_features(rows, data_dir, mel, workers), strict=True):
            f.write(feats.tobytes())
            index.append(
                {
                    "fname": row["fname"],
                    "subset": row["subset"],
                    "offset": offset,
                    "frames": len(feats),
                }
            )
            offset += len(feats)
        f.flush()
        os.fsync(f.fileno())
    pq.write_table(pa.Table.from_pylist(index, schema=STORE_INDEX_SCHEMA), out / "index.parquet")
    (out / "store.json").write_text(
        json.dumps({"total_frames": offset, "n_mels": mel.n_mels, "mel": mel.model_dump()})
    )


def _intervals(row: dict) -> np.ndarray:
    """A metadata row's non-silent intervals as an ``(n, 2)`` int64 array."""
    pairs = [[iv["start"], iv["end"]] for iv in row["nonsilent"]]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)
