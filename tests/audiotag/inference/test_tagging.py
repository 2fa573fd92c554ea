"""audiotag/inference/tagging.py: finding audio, picking labels, model packages and how a
package is found, and tagging in chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiotag.config import SegmentSettings
from audiotag.features.audio import find_nonsilent, read_audio, remove_silence
from audiotag.features.logmel import compute_logmel
from audiotag.inference.tagging import (
    PACKAGE_MANIFEST,
    Ensemble,
    find_audio,
    package_digest,
    resolve_package,
    select,
    tag_files,
    tag_record,
)
from tests.helpers.audio import write_tone
from tests.helpers.fifo import WatchedFifo
from tests.helpers.packages import VOCAB, write_tiny_package, write_tone_clip, write_tone_package


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_package(tmp_path_factory.mktemp("package"), seed=0)


def test_folders_are_searched_recursively_for_audio_and_files_are_kept_as_given(
    tmp_path: Path,
) -> None:
    for name in ("b.wav", "a.FLAC", "deep/er/c.ogg", "deep/d.aiff", "notes.txt", "deep/x.csv"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    given = tmp_path / "given.txt"  # named by the user: tagged (or refused) as given
    given.write_text("")
    found = find_audio([given, tmp_path / "in"])
    rel = [str(p.relative_to(tmp_path)) for p in found]
    assert rel == ["given.txt", "in/a.FLAC", "in/b.wav", "in/deep/d.aiff", "in/deep/er/c.ogg"]


PROBS = np.array([0.2, 0.9, 0.5, 0.5])
LABELS = ("a", "b", "c", "d")


def test_labels_are_picked_by_falling_probability_top_k_or_from_a_threshold() -> None:
    assert select(PROBS, LABELS, 2, None) == [("b", 0.9), ("c", 0.5)]  # ties in vocab order
    assert select(PROBS, LABELS, None, 0.5) == [("b", 0.9), ("c", 0.5), ("d", 0.5)]
    assert select(PROBS, LABELS, 1, 0.5) == [("b", 0.9)]
    assert select(PROBS, LABELS, None, 0.95) == []
    assert [label for label, _ in select(PROBS, LABELS, None, None)] == ["b", "c", "d", "a"]
    per_label = np.array([0.1, 0.95, 0.6, 0.5])  # each label's own threshold
    assert select(PROBS, LABELS, None, per_label) == [("d", 0.5), ("a", 0.2)]


def test_equal_packages_have_equal_digests_and_the_manifest_holds_the_runs_settings(
    package: Path, tmp_path: Path
) -> None:
    twin = write_tiny_package(tmp_path / "twin", seed=0)
    other = write_tiny_package(tmp_path / "other", seed=1)
    assert sorted(p.name for p in package.iterdir()) == [PACKAGE_MANIFEST, "fold-1.pt"]
    assert package_digest(twin) == package_digest(package)
    assert package_digest(other) != package_digest(package)
    manifest = json.loads((package / PACKAGE_MANIFEST).read_text())
    assert manifest["models"] == ["fold-1.pt"] and manifest["vocab"] == list(VOCAB)
    ens = Ensemble(package)
    assert ens.eval is not None and ens.eval.model_dump(mode="json") == manifest["eval"]
    assert ens.how == manifest["ensemble"] and ens.vocab == VOCAB


def test_a_package_is_found_from_itself_a_model_file_or_a_work_dirs_newest_run(
    package: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    for run in ("20240101-0900", "20240102-0900"):
        (work / "runs" / run / "model").mkdir(parents=True)
        (work / "runs" / run / "model" / PACKAGE_MANIFEST).write_text("{}")
    assert resolve_package(work) == work / "runs" / "20240102-0900" / "model"
    assert resolve_package(package) == package
    assert resolve_package(package / "fold-1.pt") == package / "fold-1.pt"
    with pytest.raises(FileNotFoundError, match="no audiotag model package"):
        resolve_package(tmp_path / "empty")


def test_packages_with_other_vocabularies_are_not_one_ensemble(tmp_path: Path) -> None:
    package = write_tiny_package(tmp_path / "a", seed=0)
    other = write_tiny_package(tmp_path / "b", seed=0, vocab=("Bark", "Meow"))
    (package / "fold-2.pt").write_bytes((other / "fold-1.pt").read_bytes())
    manifest = json.loads((package / PACKAGE_MANIFEST).read_text())
    manifest["models"].append("fold-2.pt")
    (package / PACKAGE_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="vocabulary or mel settings differ"):
        Ensemble(package)


def test_a_files_tags_do_not_depend_on_the_chunk_it_was_tagged_in(
    package: Path, tmp_path: Path
) -> None:
    files = [write_tone(tmp_path / f"{i}.wav", freq=300.0 * (i + 1), seconds=0.5) for i in range(2)]
    files.insert(1, tmp_path / "missing.wav")
    ens = Ensemble(package)
    seen: list[int] = []
    chunked = list(tag_files(ens, files, top_k=None, chunk=2, on_file=seen.append))
    whole = list(tag_files(ens, files, top_k=None, chunk=32))
    assert [t.path for t in chunked] == [str(f) for f in files] and seen == [1] * 3
    assert chunked[1].error and not chunked[1].tags
    for a, b in zip(chunked, whole, strict=True):
        assert a.error == b.error and [label for label, _ in a.tags] == [x for x, _ in b.tags]
        np.testing.assert_allclose([p for _, p in a.tags], [p for _, p in b.tags], rtol=1e-5)


def test_fifos_and_devices_get_error_rows_named_as_such_and_are_never_opened(
    package: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    good = write_tone(inbox / "a.wav", seconds=0.5)
    (inbox / "zero.wav").symlink_to("/dev/zero")
    with WatchedFifo(inbox / "b.wav") as fifo, WatchedFifo(tmp_path / "given.wav") as given:
        # A folder lists the FIFO (an error row), as it does the link to a device.
        found = find_audio([inbox, given.path, Path("/dev/zero")])
        assert found == [good, fifo.path, inbox / "zero.wav", given.path, Path("/dev/zero")]
        rows = list(tag_files(Ensemble(package), found))
        assert not fifo.opened() and not given.opened()
    assert rows[0].error is None and rows[0].tags
    assert [r.error for r in rows[1:]] == [
        "a FIFO, not an audio file",
        "a device, not an audio file",
        "a FIFO, not an audio file",
        "a device, not an audio file",
    ]


def test_by_default_each_label_is_kept_above_its_own_threshold_and_the_best_is_marked(
    tmp_path: Path,
) -> None:
    files = [write_tone(tmp_path / f"{i}.wav", freq=300.0 * (i + 1), seconds=0.5) for i in range(3)]
    plain = Ensemble(write_tiny_package(tmp_path / "plain", seed=0))
    probs = plain.predict([plain.features(f) for f in files])
    # Thresholds that keep Bark on file 0 only, and Run nowhere.
    top = np.sort(probs[:, 0])
    cut = {"Bark": round(float(top[-1] + top[-2]) / 2, 6), "Run": 1.0}
    ens = Ensemble(write_tiny_package(tmp_path / "calibrated", seed=0, thresholds=cut))
    assert ens.thresholds is not None and ens.thresholds.by_label == cut
    rows = list(tag_files(ens, files, top_k=None, per_class=True))
    for row, p in zip(rows, probs, strict=True):
        assert [label for label, _ in row.tags] == [
            label for label, q in zip(VOCAB, p, strict=True) if q >= cut[label]
        ]
        assert row.best == (VOCAB[int(np.argmax(p))], pytest.approx(float(p.max()), rel=1e-5))
    assert sum(bool(r.tags) for r in rows) == 1
    record = tag_record(next(r for r in rows if not r.tags))
    assert record["tags"] == [] and record["best"]["label"] in VOCAB
    assert set(record) == {"path", "tags", "best", "error"}  # no segments unless asked


def test_a_long_file_predicted_alone_in_blocks_gives_what_the_whole_file_path_gives(
    package: Path, tmp_path: Path
) -> None:
    # 30 s at 44.1 kHz: more than one decoded block (BLOCK_FRAMES), and a silence cut.
    long = write_tone(tmp_path / "long.wav", freq=700.0, seconds=24.0, start=3.0, total=30.0)
    short = write_tone(tmp_path / "short.wav", freq=400.0, seconds=1.0)
    ens = Ensemble(package)
    files = [short, long, short]
    together = list(tag_files(ens, files, top_k=None))
    alone = list(tag_files(ens, files, top_k=None, chunk_frames=16))  # each file alone
    samples, sr = read_audio(long)
    whole = compute_logmel(
        remove_silence(samples, find_nonsilent(samples, ens.mel.silence_top_db)), sr, ens.mel
    )
    expected = ens.predict([whole])[0]
    for rows in (together, alone):
        probs = dict(rows[1].tags)
        np.testing.assert_allclose([probs[v] for v in VOCAB], expected, rtol=1e-5, atol=1e-6)
        assert [r.tags for r in rows[::2]] == [rows[0].tags] * 2


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Ensemble:
    return Ensemble(write_tone_package(tmp_path_factory.mktemp("tones")))


def test_two_sounds_in_a_long_file_are_found_as_segments_within_a_window_of_the_truth(
    tones: Ensemble, tmp_path: Path
) -> None:
    truth = {"Low": (6.0, 10.0), "High": (27.0, 31.0)}
    clip = write_tone_clip(
        tmp_path / "field.wav", 40.0, [(label, a, b) for label, (a, b) in truth.items()]
    )
    # Digital silence between the sounds: cut before featurising, counted back in after.
    y, sr = sf.read(clip, dtype="float32")
    y[int(14 * sr) : int(20 * sr)] = 0
    sf.write(clip, y, sr, subtype="PCM_16")
    (row,) = tag_files(tones, [clip], segments=SegmentSettings(min_gap=1.0))
    window = tones.window_frames * tones.mel.hop_length / tones.mel.sample_rate  # 2 s
    found = {label: [(s.start, s.end) for s in row.segments if s.label == label] for label in truth}
    for label, (start, end) in truth.items():
        assert len(found[label]) == 1, row.segments
        (got,) = found[label]
        assert abs(got[0] - start) <= window and abs(got[1] - end) <= window, row.segments
    record = tag_record(row)
    assert [s["label"] for s in record["segments"]] == ["Low", "High"]
    assert all(0.5 <= s["probability"] <= 1 for s in record["segments"])
    json.loads(json.dumps(record, allow_nan=False))
