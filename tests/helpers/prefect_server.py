"""A real `prefect server start` for operator tests: its API, workers, runs made as the
UI's buttons make them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FOLD_PARAMS = "fold"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    api: str
    ui: str
    env: dict[str, str]
    tmp: Path

    def in_this_process(self) -> AbstractContextManager[object]:
        """Prefect in this test process talks to this server while the block runs.

        Prefect read its settings when it was imported: a ``PREFECT_API_URL`` set in
        the environment later is not seen, and a flow or a concurrency slot would start
        (or use) a temporary server of its own instead.
        """
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        return temporary_settings(
            updates={PREFECT_API_URL: self.api, PREFECT_HOME: self.env["PREFECT_HOME"]}
        )

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=30)

    def prefect(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(
            [str(BIN / "prefect"), *args],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def start_worker(self, name: str, **extra: str) -> subprocess.Popen:
        env = {
            **self.env,
            "AUDIOTAG_HOME": str(ROOT),  # prefect.yaml's pull step
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "AUDIOTAG_CPU_THREADS": "1",  # as the Dask workers below: same arithmetic
            **extra,
        }
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "audiotag-cpu"]
            + ["--type", "process", "--name", name, "--limit", "1"],
            cwd=self.tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def deployment_id(self, name: str) -> str:
        with self.http() as c:
            r = c.get(f"/deployments/name/audiotag-train/{name}")
            r.raise_for_status()
            return r.json()["id"]

    def create_run(self, deployment: str, parameters: dict) -> httpx.Response:
        """What the UI's Run button sends."""
        with self.http() as c:
            return c.post(
                f"/deployments/{self.deployment_id(deployment)}/create_flow_run",
                json={"parameters": parameters, "state": {"type": "SCHEDULED"}},
            )

    def wait(self, run_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        with self.http() as c:
            while time.monotonic() < deadline:
                run = c.get(f"/flow_runs/{run_id}").json()
                if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                    return run
                time.sleep(1)
        raise AssertionError(f"flow run {run_id} still {run['state']['name']} after {timeout}s")

    def task_states(self, run_id: str) -> dict[str, str]:
        """The newest state of each fold task run of a flow run, by name."""
        with self.http() as c:
            runs = c.post(
                "/task_runs/filter",
                json={"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200},
            ).json()
        newest: dict[str, dict] = {}
        for r in runs:
            if FOLD_PARAMS in r["name"]:
                if r["name"] not in newest or r["created"] > newest[r["name"]]["created"]:
                    newest[r["name"]] = r
        return {name: r["state"]["name"] for name, r in newest.items()}


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
    return path


@contextmanager
def browser_page(width: int = 1280, height: int = 1600) -> Iterator[Any]:
    """A page of Debian's chromium, headless, driven by playwright (which downloads none)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
