"""flows/cli.py: the commands, and a run refused before any work with one line."""

import re
from pathlib import Path

import pytest

from audiotag.steps.preflight import MIN_FREE_ENV
from flows.cli import main
from tests.helpers.layouts import curated_clips, write_csv, write_layout
from tests.helpers.prefect_server import free_port
from tests.helpers.workdirs import read_only_dir


def test_bad_override_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    code = main(["run", "--workdir", str(tmp_path / "w"), "--set", "noisy.cycles.0.epochs=-2"])
    assert code == 2
    assert "epochs" in capsys.readouterr().err
    assert not (tmp_path / "w" / "data").exists()


def test_unknown_field_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["run", "--workdir", str(tmp_path), "--set", "noisy.nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_demo_data_writes_the_competition_zip(tmp_path: Path, capsys) -> None:
    assert main(["demo-data", str(tmp_path), "--scale", "0.05"]) == 0
    assert Path(capsys.readouterr().out.strip()).name == "freesound-audio-tagging-2019.zip"


# --- a run that cannot succeed fails before any work, in one line naming the cause ---

VOCAB = ("Bark", "Meow")


def _run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str, float]:
    """``audiotag ARGS`` in a new process: (exit code, stderr, seconds from its start)."""
    import os
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return out.returncode, out.stderr, time.monotonic() - start


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("missing source", r"nowhere: no such file or directory"),
        ("no labels column", r"train_curated.csv: no 'labels' column"),
        ("labels outside the vocabulary", r"every clip's labels are outside the vocabulary"),
        ("more folds than clips", r"3 labelled clips cannot make folds.n_folds=4 folds"),
        ("work dir under a file", r"cannot be made: a part of its path is a file"),
        ("full disk", r"MB free, a run needs at least"),
        ("tracking store unopenable", r"is a directory, not an SQLite file"),
        ("override without =", r"override 'seed' is not KEY=VALUE"),
        ("no Prefect server at --prefect-api", r"no Prefect server answers at http://127"),
    ],
)
def test_a_run_that_cannot_succeed_fails_before_any_work_with_one_line(
    isolated_env: Path, case: str, cause: str
) -> None:
    data, work = isolated_env / "data", isolated_env / "work"
    write_layout(data, VOCAB, {"curated": curated_clips(3, VOCAB)}, audio=False)
    args = ["run", "--source", str(data), "--workdir", str(work), "--preset", "debug"]
    args += ["--set", "folds.n_folds=4" if case == "more folds than clips" else "folds.n_folds=2"]
    env = {}
    if case == "missing source":
        args[2] = str(isolated_env / "nowhere")
    elif case == "no labels column":
        write_csv(data / "train_curated.csv", ["fname", "label"], [["c000.wav", "Bark"]])
    elif case == "labels outside the vocabulary":
        write_csv(data / "train_curated.csv", ["fname", "labels"], [["c000.wav", "Moo"]] * 3)
    elif case == "work dir under a file":
        (isolated_env / "afile").write_text("x")
        args[4] = str(isolated_env / "afile" / "work")
    elif case == "full disk":
        env[MIN_FREE_ENV] = str(10**12)  # more than any disk has free
    elif case == "tracking store unopenable":
        (work / "mlflow.db").mkdir(parents=True)
    elif case == "override without =":
        args += ["--set", "seed"]
    elif case == "no Prefect server at --prefect-api":
        args += ["--prefect-api", f"http://127.0.0.1:{free_port()}/api"]  # nothing listens
    code, err, _ = _run_cli(*args, env=env)
    assert code == 2, err
    assert re.search(cause, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("audiotag: ")
    # Refused before any work: no Prefect server was started (it logs to stderr), nothing
    # of the run was written. (Seconds are measured in the note, not asserted here.)
    assert "Starting temporary server" not in err
    assert not (work / "data").exists() and not (work / "metadata.parquet").exists()


def test_a_read_only_work_dir_is_named_read_only_in_one_line(isolated_env: Path, capsys) -> None:
    data = write_layout(isolated_env / "data", VOCAB, {"curated": curated_clips(4, VOCAB)})
    with read_only_dir(isolated_env / "ro") as ro:
        argv = ["run", "--source", str(data), "--workdir", str(ro), "--preset", "debug"]
        assert main([*argv, "--set", "folds.n_folds=2"]) == 2
    err = capsys.readouterr().err
    assert "read-only" in err and len(err.strip().splitlines()) == 1, err


def test_debug_shows_the_traceback_of_an_expected_error(isolated_env: Path) -> None:
    from audiotag.errors import UsageError

    argv = ["--debug", "run", "--source", str(isolated_env / "nowhere")]
    with pytest.raises(UsageError, match="no such file or directory"):
        main([*argv, "--workdir", str(isolated_env / "work")])


@pytest.mark.slow
def test_a_temporary_server_that_does_not_start_in_time_is_one_line_naming_the_fix(
    isolated_env: Path,
) -> None:
    """A busy machine, made certain: Prefect may wait 0 s for its temporary server."""
    import os
    import subprocess
    import sys

    from flows.server import STARTUP_ENV

    work = isolated_env / "work"
    args = ["run", "--source", "demo", "--preset", "debug", "--workdir", str(work)]
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, STARTUP_ENV: "0"},
        timeout=240,
    )
    code, err = done.returncode, done.stderr
    assert code == 2, err
    # What it does is said before the slow part (Prefect's import and start).
    said = done.stdout.splitlines()
    assert said[0] == f"audiotag run: preset debug, source demo, work dir {work}"
    assert said[1].startswith("checked; starting Prefect's temporary server (up to 0 s")
    assert "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith("audiotag:")]
    assert "temporary server did not answer within 0 s" in line
    assert f"raise {STARTUP_ENV}" in line and "--prefect-api http://" in line
    assert "PREFECT_API_URL" in line
    assert not (work / "data").exists()


# --- the CLI in the ecosystem's habits: --version, help with defaults, config show ---


def test_version_prints_the_package_version(capsys) -> None:
    from audiotag import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"audiotag {__version__}"


def _commands(parser, name: str = "") -> dict:
    """``{"run": parser, "config show": parser, ...}``: every (sub)command's parser."""
    import argparse

    found = {name: parser} if name else {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found.update(_commands(sub, f"{name} {sub_name}".strip()))
    return found


def test_help_is_a_purpose_with_examples_and_every_option_shows_its_default() -> None:
    from flows.cli import build_parser

    parser = build_parser()
    top = parser.format_help()
    assert "audiotag: train and use multi-label audio taggers" in top
    assert "examples:\n  audiotag run --source demo" in top
    assert "entry layer" not in top  # the module's docstring is for developers
    commands = {"": parser, **_commands(parser)}
    assert {"run", "tag", "config", "config show", "demo-data"} <= set(commands)
    for name, command in commands.items():
        formatter = command._get_formatter()
        for action in command._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            if action.const is True or action.required:  # a flag: off unless given
                continue
            text = formatter._get_help_string(action) % vars(action)
            assert "(default:" in text, f"audiotag {name} {action.option_strings[0]}: {text}"


def test_config_show_prints_every_field_with_its_key_value_and_description(capsys) -> None:
    from audiotag.config import load_config
    from audiotag.config.describe import describe_fields

    assert main(["config", "show", "debug", "--set", "curated.cycles.0.epochs=3"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[3:]}
    for row in describe_fields(load_config("debug")):
        assert row.key in lines and row.description.split()[0] in lines[row.key], row.key
    assert lines["curated.cycles.0.epochs"].split()[1] == "3"
    assert "Epochs in this cycle. [> 0]" in lines["curated.cycles.0.epochs"]


def test_bad_values_are_one_line_each_naming_the_key_the_value_and_the_range(
    tmp_path: Path, capsys
) -> None:
    args = ["run", "--workdir", str(tmp_path / "w"), "--set", "curated.cycles.0.epochs=-1"]
    assert main([*args, "--set", "augment.lighting_p=2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert sorted(err) == [
        "audiotag: augment.lighting_p=2: should be less than or equal to 1",
        "audiotag: curated.cycles.0.epochs=-1: should be greater than 0",
    ]
    assert main(["config", "show", "--set", "model.depth=3"]) == 2
    assert capsys.readouterr().err == (
        "audiotag: model.depth: no such setting (`audiotag config show` lists them)\n"
    )


@pytest.mark.slow
def test_ctrl_c_stops_the_folds_keeps_their_checkpoints_and_the_same_command_resumes(
    isolated_env: Path,
) -> None:
    """SIGINT to the run's process group, as a terminal's Ctrl-C sends it (to the
    temporary Prefect server too), once each fold has a checkpoint: exit 130, the line
    saying how to resume, no traceback, the checkpoints kept; the same command again
    continues each fold from its checkpoint and completes."""
    import glob
    import os
    import signal
    import subprocess
    import sys
    import time

    from flows.cli import INTERRUPTED, RESUME_LINE

    data = write_layout(isolated_env / "data", VOCAB, {"curated": curated_clips(16, VOCAB)})
    work = isolated_env / "work"
    args = ["run", "--source", str(data), "--workdir", str(work), "--preset", "debug"]
    args += ["--set", "folds.n_folds=2", "--set", "curated.min_steps=32"]
    args += ["--set", 'curated.cycles=[{"epochs": 8, "lr": 0.003}]']
    cmd = [sys.executable, "-m", "flows.cli", *args]
    root = Path(__file__).resolve().parents[2]
    checkpoints = str(work / "models" / "curated-*" / "fold-*" / "checkpoints" / "epoch-*.pt")
    run = subprocess.Popen(
        cmd,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job
    )
    try:
        deadline = time.monotonic() + 240
        while len(glob.glob(checkpoints)) < 2 and run.poll() is None:
            assert time.monotonic() < deadline, "no fold wrote a checkpoint"
            time.sleep(0.1)
        os.killpg(run.pid, signal.SIGINT)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == INTERRUPTED, err[-3000:]
    assert err.splitlines().count(RESUME_LINE) == 1, err[-3000:]
    assert "Traceback" not in err, err
    assert "stopped on request in epoch" in err
    kept = glob.glob(checkpoints)
    assert len(kept) == 2 and not list(work.glob("models/curated-*/fold-*/model.pt"))

    again = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("resumed after epoch") == 2, again.stderr[-3000:]
    assert len(list(work.glob("models/curated-*/fold-*/model.pt"))) == 2
    assert not glob.glob(checkpoints)


# --- behind a proxy: our own servers on 127.0.0.1 are reached directly ---


def test_a_proxy_in_the_environment_never_takes_the_requests_to_our_own_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY at a port where nothing listens: without NO_PROXY for loopback the
    check of the Prefect server (and Prefect's client, both httpx) went to the proxy."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from flows.server import use_prefect_server

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    closed = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.setenv("NO_PROXY", "intranet.example")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = f"http://127.0.0.1:{server.server_address[1]}/api"
        assert use_prefect_server(api) == api  # answered, not refused by the "proxy"
    finally:
        server.shutdown()
    import os

    assert os.environ["NO_PROXY"].split(",") == [
        "intranet.example",
        "127.0.0.1",
        "localhost",
        "::1",
    ]
    assert "127.0.0.1" in os.environ["no_proxy"].split(",")
