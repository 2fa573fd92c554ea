import io
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiotag.features.audio import (
    AudioReadError,
    SilenceScan,
    check_regular_file,
    find_nonsilent,
    frame_rms_db,
    read_audio,
    remove_silence,
    scan_silence,
)
from tests.helpers.audio import write_tone
from tests.helpers.fifo import WatchedFifo


def test_reads_real_recordings_as_mono_float(drums_dir: Path) -> None:
    for path in sorted(drums_dir.glob("*.wav"))[:12]:
        samples, sr = read_audio(path)
        assert sr == 44100
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert 0 < np.abs(samples).max() <= 1.0


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "st.wav", channels=2)
    samples, _ = read_audio(path)
    assert samples.ndim == 1 and len(samples) == 44100


@pytest.mark.parametrize(
    "content", [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"not audio at all" * 64]
)
def test_broken_files_raise_the_documented_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioReadError, match="broken.wav"):
        read_audio(path)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_samples_equal_libsndfiles_own_float_conversion(
    tmp_path: Path, subtype: str, channels: int
) -> None:
    rng = np.random.default_rng(channels)
    y = rng.uniform(-1, 1, size=(4000, channels)).astype(np.float32)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, y, 22050, subtype=subtype)
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    samples, sr = read_audio(path)
    assert sr == 22050
    np.testing.assert_array_equal(samples, ref.mean(axis=1) if channels > 1 else ref[:, 0])


def test_a_missing_file_or_a_folder_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(AudioReadError, match=r"gone\.wav: no such file"):
        read_audio(tmp_path / "gone.wav")
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioReadError, match=r"dir\.wav: a directory"):
        read_audio(tmp_path / "dir.wav")


def test_a_fifo_is_named_as_such_and_never_opened(tmp_path: Path) -> None:
    with WatchedFifo(tmp_path / "pipe.wav") as fifo:
        (tmp_path / "link.wav").symlink_to(fifo.path)
        for path in (fifo.path, tmp_path / "link.wav"):
            with pytest.raises(AudioReadError, match=r"\.wav: a FIFO, not an audio file$"):
                read_audio(path)
        assert not fifo.opened()


def test_devices_and_sockets_are_named_as_such_and_not_read(tmp_path: Path) -> None:
    (tmp_path / "zero.wav").symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), Path("/dev/null"), tmp_path / "zero.wav"):
        with pytest.raises(AudioReadError, match=r": a device, not an audio file$"):
            read_audio(path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.wav"))
        with pytest.raises(AudioReadError, match=r"sock\.wav: a socket, not an audio file$"):
            read_audio(tmp_path / "sock.wav")


def test_the_check_stats_a_regular_file_and_follows_links_inside(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav")
    (tmp_path / "b.wav").symlink_to("a.wav")
    assert check_regular_file(tmp_path / "b.wav").st_ino == os.stat(path).st_ino
    assert read_audio(tmp_path / "b.wav")[0].shape == (44100,)
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    with pytest.raises(AudioReadError, match=r"loop\.wav: cannot be looked up"):
        read_audio(tmp_path / "loop.wav")


def test_a_file_longer_than_the_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "long.wav", seconds=3.0, sr=8000)
    with pytest.raises(AudioReadError, match=r"long\.wav: 3\.0 s long; the limit is 2 s"):
        read_audio(path, max_seconds=2)
    # At the limit, it is read.
    assert len(read_audio(path, max_seconds=3)[0]) == 24000
    with pytest.raises(AudioReadError, match=r"^the sent audio: 3\.0 s long"):
        read_audio(io.BytesIO(path.read_bytes()), max_seconds=2)


def test_errors_on_sent_bytes_name_no_object_and_no_address() -> None:
    with pytest.raises(AudioReadError) as err:
        read_audio(io.BytesIO(b"RIFF, but no audio"))
    assert str(err.value) == "the sent audio: unreadable audio (Format not recognised.)"
    with pytest.raises(AudioReadError, match=r"^row 3: unreadable audio \(Format"):
        read_audio(io.BytesIO(b"x" * 100), name="row 3")


def test_nan_samples_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.1, np.nan, 0.2], dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="NaN"):
        read_audio(path)


def test_nonsilent_finds_a_tone_placed_late_in_silence(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "late.wav", seconds=0.5, start=2.0, total=3.0)
    samples, sr = read_audio(path)
    iv = find_nonsilent(samples, 20.0)
    assert len(iv) == 1
    start, end = iv[0] / sr
    assert 1.9 < start < 2.05 and 2.45 < end < 2.6
    kept = remove_silence(samples, iv)
    assert 0.45 * sr < len(kept) < 0.65 * sr


def test_all_zero_clip_has_no_sound() -> None:
    assert find_nonsilent(np.zeros(44100, dtype=np.float32), 20.0).shape == (0, 2)


def test_nonsilent_matches_librosa_rule_on_real_drums(drums_dir: Path) -> None:
    # Every drum hit starts loud: the first interval starts at the beginning, and
    # trimming never removes the loudest sample.
    for path in sorted(drums_dir.glob("*.wav"))[::6]:
        samples, _ = read_audio(path)
        iv = find_nonsilent(samples, 20.0)
        assert len(iv) >= 1
        peak = int(np.abs(samples).argmax())
        assert any(s <= peak < e for s, e in iv)


def test_a_silence_scan_fed_in_blocks_is_the_scan_of_the_whole_signal() -> None:
    """Frame energies are sums of hop energies, so blocks of any size give the very
    frames, intervals and RMS of the whole signal (bit for bit), and the frames are the
    centred frames of librosa's rule."""
    rng = np.random.default_rng(3)
    gain = np.repeat(np.tile([0.9, 0.0, 0.2, 0.005], 8), 3000)
    x = (rng.standard_normal(len(gain)) * gain).astype(np.float32)
    whole = scan_silence(x)
    for block in (7, 333, 512, 5000):
        scan = SilenceScan()
        for i in range(0, len(x), block):
            scan.add(x[i : i + block])
        assert np.array_equal(scan.frame_rms_db(), whole.frame_rms_db())
        assert np.array_equal(scan.nonsilent(20.0), whole.nonsilent(20.0))
        assert scan.rms == whole.rms and scan.peak == whole.peak
    padded = np.pad(x.astype(np.float64), 1024)
    frames = [padded[i : i + 2048] for i in range(0, len(padded) - 2048 + 1, 512)]
    power = np.array([np.mean(f**2) for f in frames])
    np.testing.assert_allclose(frame_rms_db(x), 10 * np.log10(np.maximum(power, 1e-20)))
    assert len(whole.nonsilent(20.0)) == 16  # the 0.9 and 0.2 parts; 0.005 is 45 dB down
