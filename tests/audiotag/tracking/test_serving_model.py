"""audiotag/tracking/serving_model.py served for real: ``mlflow models serve`` on
127.0.0.1, asked by a hostile client for files on the server's disk and for too much."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from audiotag.inference.serving import ENV_ALLOWED_DIRS, NO_INPUT, PATH_REFUSED
from audiotag.tracking.pyfunc import NO_COLUMNS
from audiotag.tracking.registry import register_ensemble
from audiotag.tracking.runs import start_parent
from tests.helpers.audio import write_tone
from tests.helpers.fifo import WatchedFifo
from tests.helpers.flows import invoke, served_model

pytestmark = pytest.mark.slow


def test_the_served_model_opens_no_path_outside_its_folders_and_refuses_alike(
    workdir: Path, package: Path, vocab: tuple[str, ...], tmp_path: Path
) -> None:
    tracking = start_parent(workdir, "run-1", {}, {})
    version = register_ensemble(tracking, package, vocab, 0.5).version
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    good = write_tone(allowed / "good.wav", seconds=0.5)
    secret = write_tone(outside / "secret.wav", seconds=0.5)  # tagged if ever read
    (allowed / "link_out.wav").symlink_to(secret)
    (allowed / "zero.wav").symlink_to("/dev/zero")
    long = write_tone(tmp_path / "long.wav", seconds=3.0, sr=8000)
    env = {ENV_ALLOWED_DIRS: str(allowed), "AUDIOTAG_SERVE_MAX_SECONDS": "2"}
    env["AUDIOTAG_SERVE_MAX_ROWS"] = "16"

    with (
        WatchedFifo(allowed / "pipe.wav") as fifo,
        WatchedFifo(outside / "pipe.wav") as fifo_outside,
        served_model(tracking.uri, f"models:/audiotag/{version}", env=env) as base,
    ):
        (allowed / "link_fifo.wav").symlink_to(fifo_outside.path)
        refused = [
            "/etc/passwd",
            "/proc/self/environ",
            "../../etc/hostname",
            "/nonexistent",
            "/root",
            str(secret),  # outside the allowed folder
            str(allowed / "link_out.wav"),  # a link out of it
            str(allowed / "pipe.wav"),  # a FIFO inside it
            str(allowed / "link_fifo.wav"),  # a link to a FIFO outside
            "/dev/zero",
            str(allowed / "zero.wav"),
            str(allowed / "missing.wav"),
        ]
        records = [{"path": str(good)}] + [{"path": p} for p in refused]
        records += [
            {"audio": base64.b64encode(long.read_bytes()).decode()},
            {"colour": "an unknown column"},
            {"audio": base64.b64encode(b"RIFF, but no audio").decode()},
        ]
        status, reply = invoke(base, records)
        assert not fifo.opened() and not fifo_outside.opened()
        too_many, many = invoke(base, [{"path": str(good)}] * 17)
        only_unknown, lost = invoke(base, [{"colour": "red"}])

    assert status == 200
    rows = reply["predictions"]
    assert len(rows) == len(records)  # one answer per row, whatever it sent
    assert rows[0]["error"] == "" and rows[0]["tags"].count(":") == 2
    for row in rows[1 : 1 + len(refused)]:
        assert row["error"] == PATH_REFUSED and row["tags"] == ""
    n = 1 + len(refused)
    assert [r["error"] for r in rows[n:]] == [
        f"row {n}: 3.0 s long; the limit is 2 s",
        NO_INPUT,
        f"row {n + 2}: unreadable audio (Format not recognised.)",
    ]
    assert not any("0x" in r["error"] for r in rows)
    assert too_many == 200 and len(many["predictions"]) == 17
    assert {r["error"] for r in many["predictions"]} == {
        "request refused: 17 rows; the limit is 16 (AUDIOTAG_SERVE_MAX_ROWS)"
    }
    assert only_unknown == 400 and NO_COLUMNS in lost["message"]
