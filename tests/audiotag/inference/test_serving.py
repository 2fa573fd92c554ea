"""audiotag/inference/serving.py: what the served model accepts, decided before decoding:
its settings from the environment, the folders a path may name, and the limits."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from audiotag.config import ServeSettings
from audiotag.inference.serving import (
    ENV_ALLOWED_DIRS,
    PATH_REFUSED,
    PATHS_OFF,
    RowError,
    decode_audio,
    open_allowed_file,
    request_refusal,
    row_source,
    serve_settings_from_env,
)
from tests.helpers.audio import write_tone
from tests.helpers.fifo import WatchedFifo


def test_settings_come_from_the_environment_and_default_to_bytes_only(tmp_path: Path) -> None:
    assert serve_settings_from_env({}) == ServeSettings()
    assert ServeSettings().allowed_dirs == ()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    env = {
        ENV_ALLOWED_DIRS: f"{tmp_path / 'link'}::{tmp_path}",
        "AUDIOTAG_SERVE_MAX_ROWS": "8",
        "AUDIOTAG_SERVE_MAX_ROW_BYTES": "1000",
        "AUDIOTAG_SERVE_MAX_REQUEST_BYTES": "4000",
        "AUDIOTAG_SERVE_MAX_SECONDS": "2.5",
    }
    assert serve_settings_from_env(env) == ServeSettings(
        allowed_dirs=(str(tmp_path / "real"), str(tmp_path)),  # kept as real paths
        max_rows=8,
        max_row_bytes=1000,
        max_request_bytes=4000,
        max_seconds=2.5,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUDIOTAG_SERVE_MAX_ROWS": "many"}, "AUDIOTAG_SERVE_MAX_ROWS='many' is not a number"),
        ({"AUDIOTAG_SERVE_MAX_SECONDS": "0"}, "greater than 0"),
        ({ENV_ALLOWED_DIRS: "relative/dir"}, "'relative/dir' is not an absolute path"),
        ({ENV_ALLOWED_DIRS: "/no/such/folder"}, "'/no/such/folder' is not an absolute path"),
    ],
)
def test_a_bad_setting_stops_the_model_loading_naming_it(env: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        serve_settings_from_env(env)


def test_no_path_is_read_unless_the_operator_allows_a_folder(tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "a.wav")
    for path in (str(tone), "/etc/passwd", "/nonexistent"):
        with pytest.raises(RowError) as err:
            row_source({"audio": None, "path": path}, 0, ServeSettings())
        assert str(err.value) == PATHS_OFF


def test_only_regular_files_inside_the_allowed_folders_open_and_refusals_read_alike(
    tmp_path: Path,
) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    good = write_tone(allowed / "deep" / "good.wav", seconds=0.2)
    secret = write_tone(outside / "secret.wav", seconds=0.2)
    (allowed / "in.wav").symlink_to(good)  # a link that stays inside: read
    (allowed / "out.wav").symlink_to(secret)
    (allowed / "zero.wav").symlink_to("/dev/zero")
    settings = ServeSettings(allowed_dirs=(str(allowed),))
    with (
        WatchedFifo(allowed / "pipe.wav") as inside_fifo,
        WatchedFifo(outside / "pipe.wav") as outside_fifo,
    ):
        (allowed / "fifo_out.wav").symlink_to(outside_fifo.path)
        for path in (good, allowed / "in.wav", allowed / "deep" / ".." / "deep" / "good.wav"):
            with open_allowed_file(str(path), settings) as f:
                assert f.read() == good.read_bytes()
        refused = [
            "/etc/passwd",
            "/proc/self/environ",
            "/dev/zero",
            "/nonexistent",
            "/root",
            "../../etc/hostname",
            "deep/good.wav",  # relative: refused, not taken from the server's cwd
            str(secret),
            str(allowed / ".." / "outside" / "secret.wav"),
            str(allowed / "out.wav"),
            str(allowed / "zero.wav"),
            str(allowed / "missing.wav"),
            str(allowed / "deep"),
            str(inside_fifo.path),
            str(allowed / "fifo_out.wav"),
            str(allowed) + "\0/x.wav",
        ]
        answers = set()
        for path in refused:
            with pytest.raises(RowError) as err:
                open_allowed_file(path, settings)
            answers.add(str(err.value))
        assert answers == {PATH_REFUSED}  # one text: nothing tells what exists where
        assert not inside_fifo.opened() and not outside_fifo.opened()


def test_limits_are_checked_on_the_text_before_anything_is_decoded() -> None:
    settings = ServeSettings(max_rows=3, max_row_bytes=300, max_request_bytes=600)
    text = base64.b64encode(b"x" * 300).decode()
    rows = [{"audio": text, "path": None}] * 2
    assert request_refusal(rows, settings) is None
    assert request_refusal(rows * 2, settings) == (
        "request refused: 4 rows; the limit is 3 (AUDIOTAG_SERVE_MAX_ROWS)"
    )
    assert request_refusal(rows + [{"audio": "A" * 4, "path": None}], settings) == (
        "request refused: 603 bytes of audio; the limit is 600 (AUDIOTAG_SERVE_MAX_REQUEST_BYTES)"
    )
    assert decode_audio(text, settings) == b"x" * 300
    with pytest.raises(RowError, match=r"^audio of 303 bytes; the limit is 300 \(AUDIOTAG_"):
        decode_audio(base64.b64encode(b"x" * 301).decode(), settings)
    # Too long is refused undecoded: not even valid base64 is needed to see it.
    with pytest.raises(RowError, match="the limit is 300"):
        decode_audio("!" * 1000, settings)
    with pytest.raises(RowError, match=r"^'audio' is not valid base64$"):
        decode_audio("not base64!", settings)
    with pytest.raises(RowError, match=r"^'audio' must be a base64 string, got int$"):
        decode_audio(12, settings)
