"""audiotag/storage.py: nothing half-written is trusted, one run per fold directory, and
digests that follow the bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiotag.storage import (
    BusyError,
    atomic_path,
    exclusive,
    file_digest,
    safe_csv_cell,
    write_atomic,
    write_csv_table,
)

ROOT = Path(__file__).resolve().parents[2]


def test_a_crash_mid_write_leaves_the_previous_file_and_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "metadata.parquet"
    target.write_text("previous, complete")

    def crash(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, crash)
    assert target.read_text() == "previous, complete"
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.parquet"]


def test_atomic_write_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(tmp_path / "sub" / "model.pt", fail)
    assert list((tmp_path / "sub").iterdir()) == []


def test_a_second_holder_in_this_process_is_refused_naming_what_and_who(tmp_path: Path) -> None:
    with exclusive(tmp_path, "noisy fold 2"):
        with pytest.raises(BusyError, match=rf"noisy fold 2 .* \(pid {os.getpid()}\)"):
            with exclusive(tmp_path, "noisy fold 2"):
                pass
    with exclusive(tmp_path, "noisy fold 2"):  # released: free again
        pass


HOLD = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from audiotag.storage import exclusive
with exclusive(Path({directory!r}), "curated fold 1"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it, or kills this process
"""


def test_another_process_holding_the_lock_is_named_and_its_death_frees_it(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=str(ROOT), directory=str(tmp_path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"curated fold 1 .* \(pid {holder.pid}\)"):
            with exclusive(tmp_path, "curated fold 1"):
                pass
    finally:
        holder.kill()  # a run that dies holding the lock must not block the next one
        holder.wait(timeout=30)
    with exclusive(tmp_path, "curated fold 1"):
        pass


def test_file_digest_is_the_sha256_of_the_bytes_wherever_they_lie(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "elsewhere" / "b.pt"
    b.parent.mkdir()
    a.write_bytes(b"weights")
    b.write_bytes(b"weights")
    assert file_digest(a) == file_digest(b) == hashlib.sha256(b"weights").hexdigest()
    b.write_bytes(b"weights, retrained")
    assert file_digest(b) != file_digest(a)


def test_csv_cells_a_spreadsheet_would_run_are_escaped_and_numbers_left_alone(
    tmp_path: Path,
) -> None:
    import pandas as pd

    for text in ('=HYPERLINK("http://evil")', "+1", "-2+3", "@SUM(A1)", "\tx"):
        assert safe_csv_cell(text) == "'" + text
    assert safe_csv_cell("Bark") == "Bark" and safe_csv_cell("a=b") == "a=b"
    frame = pd.DataFrame({"fname": ["=cmd.wav", "a.wav"], "=HYPERLINK(1)": [-0.5, 0.25]})
    write_csv_table(frame, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines == ["fname,'=HYPERLINK(1)", "'=cmd.wav,-0.500000", "a.wav,0.250000"]


def test_a_demo_zip_whose_write_fails_leaves_no_partial_file(tmp_path: Path) -> None:
    # A real failed write: the file size limit (as a full disk) stops the zip mid-way.
    code = (
        "import resource, signal, sys; from pathlib import Path\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))\n"
        "from audiotag.sources.demo import write_demo_dataset\n"
        "try:\n    write_demo_dataset(Path(sys.argv[1]), scale=0.05)\n"
        "except OSError as err:\n    print(err.errno)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.stdout.strip() == "27", out.stderr  # EFBIG: the write failed
    assert list(tmp_path.iterdir()) == []  # neither the zip nor a temporary file
