"""Each bench script runs once on a tiny input, so that none can rot (no timing asserted)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# gpu_check.py runs inside the GPU check's dry run, below.
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "gpu_check.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_runs_tiny(script: str) -> None:
    out = subprocess.run(
        [sys.executable, f"bench/{script}", "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


def test_gpu_check_dry_run_runs_every_step_on_cpu() -> None:
    out = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tests collected" in out.stdout  # the gpu tests are there to run on a GPU
    assert "Projected full reference run" in out.stdout
    assert out.stdout.rstrip().splitlines()[-1].startswith("ratio: ")
