"""audiotag/tracking/serving_model.py served for real: ``mlflow models serve`` on
127.0.0.1, asked by a hostile client for files on the server's disk and for too much."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from audiotag.inference.serving import ENV_ALLOWED_DIRS, NO_INPUT, PATH_REFUSED
from audiotag.tracking.pyfunc import NO_COLUMNS
from audiotag.tracking.registry import register_ensemble
from audiotag.tracking.runs import start_parent
from tests.helpers.audio import write_tone
from tests.helpers.fifo import WatchedFifo
from tests.helpers.flows import invoke, served_model, strict_json
from tests.helpers.prefect_server import ROOT, free_port

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
    assert rows[0]["error"] == "" and len(rows[0]["tags"]) == 2
    for row in rows[1 : 1 + len(refused)]:
        assert row["error"] == PATH_REFUSED and row["tags"] == []
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


def readme_serving_example(port: int) -> str:
    """The README's serving example (the first block under "Serving over HTTP"), its
    port changed to ``port``."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Serving over HTTP") :]
    block = section.split("```\n", 2)[1]
    assert "-p 5001" in block and "--data-binary @body.json" in block
    return block.replace("5001", str(port))


def test_the_readme_serving_example_answers_strict_json_as_written(
    workdir: Path,
    package: Path,
    vocab: tuple[str, ...],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    here = tmp_path / "checkout"  # what the README's commands expect in the current folder
    (here / ".venv").parent.mkdir()
    (here / ".venv").symlink_to(Path(sys.executable).parent.parent)
    tracking = start_parent(here / "demo-work", "run-1", {}, {})
    capfd.readouterr()
    register_ensemble(tracking, package, vocab, 0.5)  # the first: champion
    assert "Downloading artifacts" not in capfd.readouterr().err  # MLflow's bars: off
    # A demo-length clip: its base64 (470 KB) is over one argument's 128 KiB.
    write_tone(here / "demo-work" / "data" / "test" / "0a1b2c3d.wav", seconds=4.0)
    script = readme_serving_example(free_port())
    out, err = here / "stdout", here / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        shell = subprocess.Popen(
            ["bash", "-e", "-c", script],
            cwd=here,
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # the backgrounded server is in its group, stopped below
        )
        try:
            assert shell.wait(timeout=240) == 0, err.read_text()[-3000:]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGTERM)

    assert len((here / "body.json").read_bytes()) > 128 * 1024
    (row,) = strict_json(out.read_text())["predictions"]
    assert row["error"] == ""
    assert [t["label"] for t in row["tags"]] == sorted(vocab, key=lambda lb: -row[lb])
    assert all(0.0 <= row[label] <= 1.0 for label in vocab)
