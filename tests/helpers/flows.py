"""Reading back what a flow run did (Prefect task states, logs, MLflow versions), tagging
through the CLI, and serving a registered model over HTTP: the end-to-end tests' helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID


def task_states(flow_run_id: UUID | str, part: str) -> dict[str, str]:
    """``{"noisy-fold-3": "Failed", ...}``: the state of each task run of a flow run
    whose name contains ``part``."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # Prefect 3 sends task-run states to the server in the background, so right after a
    # flow returns some may still be on their way (seen under load: a cached fold read as
    # 'Running', another not there yet). Read until every state is final and two
    # reads agree.
    flt = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))]))
    last: dict[str, str] | None = None
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while True:
            runs = [r for r in client.read_task_runs(flow_run_filter=flt) if part in r.name]
            states = {r.name: r.state.name for r in runs}
            if (states == last and all(r.state.is_final() for r in runs)) or (
                time.monotonic() > deadline
            ):
                return states
            last = states
            time.sleep(0.5)


def fold_task_states(flow_run_id: UUID | str) -> dict[str, str]:
    """``{"noisy-fold-3": "Failed", ...}``: the state of each fold task of a flow run."""
    return task_states(flow_run_id, "-fold-")


def registered_versions(uri: str, name: str = "audiotag") -> list[str]:
    """The versions of registered model ``name`` in the MLflow store at ``uri``, sorted."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return sorted(v.version for v in client.search_model_versions(f"name = '{name}'"))


def prefect_records(flow_run_ids: list) -> str:
    """Every log line and parameter Prefect holds for these flow runs, as text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)))
        runs = [client.read_flow_run(i) for i in flow_run_ids]
    return "\n".join([r.message for r in logs] + [json.dumps(r.parameters) for r in runs])


def tag_with_cli(paths: list[Path], model: str, out: Path, status: int = 0) -> list[dict]:
    """``audiotag tag PATHS --model MODEL --all --format jsonl``: its rows, in order;
    ``status``: the exit status expected (1: some files could not be tagged)."""
    from flows.cli import main

    args = [str(p) for p in paths] + ["--model", model, "--all", "--format", "jsonl"]
    assert main(["tag", *args, "--output", str(out)]) == status
    return [strict_json(line) for line in out.read_text().splitlines()]


@contextmanager
def served_model(
    tracking_uri: str, model_uri: str, timeout: float = 180, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``mlflow models serve -m MODEL_URI`` on a free 127.0.0.1 port; yields its base URL
    once ``/ping`` answers, and stops the server after. ``env``: variables added to the
    server's environment (the ``AUDIOTAG_SERVE_*`` settings)."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent  # mlflow starts uvicorn from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _refuse_constant(constant: str) -> None:
    raise ValueError(f"not JSON: a bare {constant}")


def strict_json(text: str | bytes) -> object:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (Python's
    json accepts them; JSON, and most clients, do not)."""
    return json.loads(text, parse_constant=_refuse_constant)


def invoke(base: str, records: list[dict]) -> tuple[int, dict]:
    """POSTs ``{"dataframe_records": records}`` to a served model: ``(status, reply)``."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"{base}/invocations",
        data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status, strict_json(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, strict_json(err.read() or b"{}")
