"""flows/cli.py: the commands, and a run refused before any work with one line."""

import re
from pathlib import Path

import pytest

from audiotag.steps.preflight import MIN_FREE_ENV
from flows.cli import main
from tests.helpers.layouts import curated_clips, write_csv, write_layout
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


def _run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
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
        timeout=60,
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
    ],
)
def test_a_run_that_cannot_succeed_fails_in_seconds_with_one_line(
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
    code, err, seconds = _run_cli(*args, env=env)
    assert code == 2, err
    assert re.search(cause, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("audiotag: ")
    assert seconds < 5, f"{case}: {seconds:.1f}s"
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
