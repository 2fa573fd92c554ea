"""Operating audiotag through Prefect, as an operator does: a real `prefect server start`,
deployments from prefect.yaml, a process worker, runs made through the REST calls of the
UI's buttons, a retry from the API, a Dask cluster, and the UI itself in a browser."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from mlflow.tracking import MlflowClient

from audiotag.config import TrainOptions
from audiotag.sources.demo import write_demo_dataset
from tests.helpers.prefect_server import (
    BIN,
    ROOT,
    Server,
    browser_page,
    free_port,
    stop,
)

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts"

# A small run with the form's fields as a person would fill them in.
OPTIONS = {"noisy_epochs": 1, "curated_epochs": 2, "tta": 1}
OVERRIDES = {"curated.cycles.0.lr": 2e-3}  # a dotted key, as the form's field takes it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`make server` on its own ports (Prefect's and MLflow's) and home, deployed to."""
    tmp = tmp_path_factory.mktemp("operate")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "AUDIOTAG_"))
    }
    env.update(
        PREFECT_HOME=str(tmp / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed with the process
    make = ["make", "-C", str(ROOT), "-o", ".venv/.installed", "server"]  # -o: no install
    make += [f"PREFECT_PORT={port}", f"MLFLOW_PORT={free_port()}", f"SERVER_DIR={tmp / 'srv'}"]
    proc = subprocess.Popen(
        make,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (tmp / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the Prefect server did not start in 120 s"
        time.sleep(1)
    # The UI's pages call the API on the port asked for (they called 4200 before).
    assert httpx.get(f"http://127.0.0.1:{port}/ui-settings").json()["api_url"] == api
    env["PREFECT_API_URL"] = api
    srv = Server(api, f"http://127.0.0.1:{port}", env, tmp)
    try:
        srv.prefect("work-pool", "create", "audiotag-cpu", "--type", "process")
        srv.prefect("work-pool", "create", "audiotag-gpu", "--type", "process")
        srv.prefect("--no-prompt", "deploy", "--all")
        yield srv
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def runs(server: Server) -> Iterator[dict]:
    """A run made as the UI's Run button makes it, with custom parameters: it fails at
    noisy fold 3 (a worker made to fail it), then is retried from the API (the UI's
    Retry button) on a sound worker and completes."""
    source = write_demo_dataset(server.tmp / "src", seed=3, scale=0.12)

    def params(workdir: str) -> dict:
        return {
            "source": str(source),
            "workdir": str(server.tmp / workdir),
            "preset": "debug",
            "options": OPTIONS,
            "overrides": OVERRIDES,
        }

    out: dict = {"source": source, "params": params}
    failing = server.start_worker("failing", AUDIOTAG_FAIL_FOLD="noisy:3")
    try:
        r = server.create_run("audiotag-train", params("work-b"))
        assert r.status_code == 201, r.text
        out["b"] = b = r.json()["id"]
        out["b_failed"] = server.wait(b)
        out["b_first"] = server.task_states(b)
    finally:
        stop(failing)
    worker = server.start_worker("worker")
    try:
        with server.http() as c:
            r = c.post(
                f"/flow_runs/{b}/set_state",
                json={
                    "state": {"type": "SCHEDULED", "name": "AwaitingRetry"},
                    "force": True,
                },
            )
            assert r.status_code in (200, 201), r.text
        out["b_run"] = server.wait(b)
        out["b_second"] = server.task_states(b)
        yield out
    finally:
        stop(worker)


def _parent_metrics(workdir: Path, flow_run_id: str) -> dict[str, float]:
    """The metrics of the flow run's finished MLflow parent run (a failed try has its own);
    the per-fold scores, one key per stage with fold k at step k, as ``<stage>/fold_<k>``."""
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("audiotag")
    (run,) = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}' and status = 'FINISHED'",
    )
    metrics = dict(run.data.metrics)
    for key in [k for k in metrics if k.startswith("fold_lwlrap/")]:
        for m in client.get_metric_history(run.info.run_id, key):
            metrics[f"{key.split('/', 1)[1]}/fold_{m.step}"] = m.value
    return metrics


def test_a_run_made_from_the_ui_completes_and_its_fold_table_matches_mlflow(
    server: Server, runs: dict
) -> None:
    assert runs["b_run"]["state"]["type"] == "COMPLETED", (server.tmp / "worker.log").read_text()[
        -3000:
    ]
    assert runs["b_run"]["parameters"]["options"] == OPTIONS
    with server.http() as c:
        arts = c.post(
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [runs["b"]]}, "type": {"any_": ["table"]}}},
        ).json()
    (table,) = [a for a in arts if a["key"] == "fold-scores"]
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    metrics = _parent_metrics(server.tmp / "work-b", runs["b"])
    assert [r["fold"] for r in rows] == [1, 2, 3, 4, 5]
    for r in rows:
        k = r["fold"]
        assert r["curated lwlrap"] == pytest.approx(metrics[f"curated/fold_{k}"], abs=5e-5)
        assert r["noisy lwlrap"] == pytest.approx(metrics[f"noisy/fold_{k}"], abs=5e-5)
    with server.http() as c:
        arts = c.post(
            "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [runs["b"]]}}}
        ).json()
    kinds = {a["type"] for a in arts}
    assert {"table", "markdown", "progress"} <= kinds
    (summary,) = [a for a in arts if a["key"] == "run-summary"]
    assert summary["task_run_id"] is None  # the flow run's own, listed first on its page
    assert f"{metrics['oof/lwlrap']:.4f}" in summary["data"]
    assert "#/experiments/" in summary["data"]  # links to the MLflow runs
    assert "Registry: registered as audiotag version" in summary["data"]
    assert "## Per-class lwlrap" in summary["data"]
    # Every fold's progress artifact ended at 100%: 8 trained in the failed try (noisy 3
    # failed before it started, curated 3 never started), noisy 3 and curated 3 in the retry.
    progress = [a for a in arts if a["type"] == "progress"]
    assert len(progress) == 10
    keys = {f"{s}-fold-{k}-progress" for s in ("noisy", "curated") for k in range(1, 6)}
    assert {a["key"] for a in progress} == keys  # titled cards, one per fold
    assert all(float(a["data"]) == pytest.approx(100.0) for a in progress)


def test_retry_from_the_api_reruns_only_the_failed_fold(runs: dict) -> None:
    assert runs["b_failed"]["state"]["type"] == "FAILED"
    assert "noisy-fold-3" in runs["b_failed"]["state"]["message"]
    assert runs["b_first"]["noisy-fold-3"] == "Failed"
    assert runs["b_run"]["state"]["type"] == "COMPLETED"
    second = runs["b_second"]
    for k in (1, 2, 4, 5):
        assert second[f"noisy-fold-{k}"] == "Cached"
        assert second[f"curated-fold-{k}"] == "Cached"
    assert second["noisy-fold-3"] == "Completed"
    assert second["curated-fold-3"] == "Completed"


def test_retrain_deployment_is_scheduled_weekly_on_the_gpu_pool(server: Server) -> None:
    with server.http() as c:
        dep = c.get("/deployments/name/audiotag-train/audiotag-retrain").json()
    assert dep["work_pool_name"] == "audiotag-gpu"
    assert dep["parameters"]["preset"] == "reference"
    assert dep["parameters"]["source"] == "kaggle"
    (schedule,) = dep["schedules"]
    assert not schedule["active"]  # as prefect.yaml deploys it: paused until GPU=1
    assert schedule["schedule"]["cron"] == "0 2 * * 1"


def test_make_deploy_pauses_the_gpu_retrain_unless_told_there_are_gpus(server: Server) -> None:
    """`make deploy`'s last step: on a CPU machine the weekly GPU retrain would show
    "Not Ready" for want of GPU workers; paused, and said so; GPU=1 schedules it."""

    def step(gpu: str) -> tuple[str, list[bool]]:
        out = subprocess.run(
            [str(BIN / "python"), "-m", "flows.deploy", gpu],
            cwd=ROOT,
            env=server.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        with server.http() as c:
            dep = c.get("/deployments/name/audiotag-train/audiotag-retrain").json()
        return out.stdout, [s["active"] for s in dep["schedules"]]

    said, active = step("0")
    assert active == [False]
    assert "schedule paused" in said and "GPU=1" in said
    said, active = step("1")
    assert active == [True]
    assert "is scheduled on pool audiotag-gpu" in said


@pytest.mark.parametrize(
    "bad",
    [
        {"preset": "giant"},
        {"options": {"noisy_epochs": -1}},
        {"options": {"curated_epochs": 0}},
        {"options": {"batch_size": "many"}},
        {"workdir": ""},
    ],
    ids=["unknown-preset", "negative-epochs", "zero-epochs", "batch-not-int", "empty-workdir"],
)
def test_the_server_refuses_bad_parameters_before_any_run(server: Server, bad: dict) -> None:
    dep = server.deployment_id("audiotag-train")

    def count() -> int:
        with server.http() as c:
            return c.post("/flow_runs/count", json={"deployments": {"id": {"any_": [dep]}}}).json()

    before = count()
    r = server.create_run("audiotag-train", bad)
    assert r.status_code in (409, 422), r.text
    assert "alidation" in r.text
    assert count() == before


def test_dask_cluster_gives_the_same_fold_scores(
    server: Server, runs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    from flows.train import train_flow

    for k, v in server.env.items():
        monkeypatch.setenv(k, v)  # the Dask workers' processes read them when they start
    monkeypatch.setenv("AUDIOTAG_CPU_THREADS", "1")  # the workers inherit it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = runs["params"]("work-dask")
    params["options"] = TrainOptions(**OPTIONS)
    with (
        server.in_this_process(),  # else the flow would start a temporary server
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            resources={"GPU": 1},
        ) as cluster,
    ):
        summary = train_flow(**params, dask_address=cluster.scheduler_address)
    with server.http() as c:  # the run is on this server, not on a temporary one
        name = summary["run_name"].split("-", 2)[2]
        found = c.post("/flow_runs/filter", json={"flow_runs": {"name": {"any_": [name]}}})
    assert [r["state"]["type"] for r in found.json()] == ["COMPLETED"]
    metrics = _parent_metrics(server.tmp / "work-b", runs["b"])
    assert len(summary["folds"]) == 5
    for f in summary["folds"]:
        k = f["fold"]
        assert f["noisy"] == pytest.approx(metrics[f"noisy/fold_{k}"], abs=1e-6)
        assert f["curated"] == pytest.approx(metrics[f"curated/fold_{k}"], abs=1e-6)


def test_ui_custom_run_form_shows_plain_fields_and_submits_as_left(server: Server) -> None:
    """The custom-run form: plain fields, not "int | None" type toggles; each option's
    help names the presets' values; submitted untouched, it makes a run whose
    parameters the server accepted (the pool paused meanwhile: no worker takes it)."""
    dep = server.deployment_id("audiotag-train")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "ui-custom-run.png"

    def runs_of() -> dict[str, dict]:
        with server.http() as c:
            found = c.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [dep]}}})
        return {r["id"]: r for r in found.json()}

    with server.http() as c:
        schema = c.get(f"/deployments/{dep}").json()["parameter_openapi_schema"]
        assert c.patch("/work_pools/audiotag-cpu", json={"is_paused": True}).status_code == 204
    try:
        with browser_page() as page:
            page.goto(f"{server.ui}/deployments/deployment/{dep}/run", wait_until="networkidle")
            try:
                page.get_by_text("preset", exact=False).first.wait_for(timeout=60_000)
            finally:
                text = page.inner_text("body")
                page.screenshot(path=str(shot), full_page=True)
            before = set(runs_of())
            page.get_by_role("button", name="Submit").click()
            deadline = time.monotonic() + 60
            while not (new := [r for r in runs_of().values() if r["id"] not in before]):
                if time.monotonic() > deadline:
                    page.screenshot(path=str(ARTIFACTS / "ui-custom-run-submitted.png"))
                    raise AssertionError("the form made no run: " + page.inner_text("body"))
                time.sleep(0.5)
        (run,) = new
        with server.http() as c:
            c.delete(f"/flow_runs/{run['id']}")
    finally:
        with server.http() as c:
            c.patch("/work_pools/audiotag-cpu", json={"is_paused": False})
    assert "options" in text.lower() and shot.stat().st_size > 0
    assert "Empty: the preset's value (reference 20, demo 6" in text
    assert '"null"' not in json.dumps(schema["definitions"]["TrainOptions"])
    defaults = {k: p["default"] for k, p in schema["properties"].items() if "default" in p}
    jsonschema.validate(defaults, schema)
    assert run["deployment_id"] == dep
    assert run["parameters"]["preset"] == "demo"
    assert not run["parameters"].get("options")  # every option left to the preset


def test_gpu_folds_never_exceed_the_gpu_limit_and_cpu_folds_take_no_slot(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextvars
    import threading

    from tasks.training import gpu_slot

    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    server.prefect("gcl", "create", "gpu", "--limit", "1")
    inside: list[str] = []
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def fold(name: str, device: str) -> None:
        with gpu_slot(device):
            with lock:
                inside.append(name)
                events.append(("in", name))
            time.sleep(0.5)
            with lock:
                # one GPU slot: no other GPU fold may be inside now
                events.append(("peers", ",".join(n for n in inside if n != name)))
                inside.remove(name)

    def active_slots() -> int:
        with server.http() as c:
            return c.get("/v2/concurrency_limits/gpu").json()["active_slots"]

    try:
        with server.in_this_process():  # the slots of this server's limit, not a temporary one
            # A new thread starts without the block's settings: each runs in a copy of them.
            threads = [
                threading.Thread(
                    target=contextvars.copy_context().run, args=(fold, f"g{i}", "cuda:0")
                )
                for i in range(3)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert [e for e in events if e[0] == "peers"] == [("peers", "")] * 3
            with gpu_slot("cpu"):
                assert active_slots() == 0
    finally:
        with server.http() as c:
            c.delete("/v2/concurrency_limits/gpu")


def test_ui_data_report_artifact_shows_every_plot(server: Server, runs: dict) -> None:
    """The plots are in the artifact (data URIs): the UI has no files to fetch them from."""
    with server.http() as c:
        arts = c.post(
            "/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [runs["b"]]},
                    "key": {"any_": ["data-report"]},
                }
            },
        ).json()
    art = arts[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with browser_page() as page:
        page.goto(f"{server.ui}/artifacts/artifact/{art['id']}", wait_until="networkidle")
        try:
            page.get_by_text("Subsets").first.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => [...document.images].filter(i => i.src.startsWith('data:')).length >= 4"
                " && [...document.images].every(i => i.complete)",
                timeout=60_000,
            )
            images = page.evaluate(
                "() => [...document.images].filter(i => i.src.startsWith('data:image/png'))"
                ".map(i => [i.alt, i.naturalWidth])"
            )
        finally:
            page.screenshot(path=str(ARTIFACTS / "ui-data-report.png"), full_page=True)
    assert sorted(alt for alt, _ in images) == [
        "durations",
        "label_frequency",
        "labels_per_clip",
        "levels",
    ]
    assert all(width > 0 for _, width in images), images


def test_mlflow_ui_opens_the_experiment_on_its_training_runs(server: Server, runs: dict) -> None:
    """The link the run summary gives opens MLflow 3's model-training view with the runs
    table, not the GenAI overview (traces, tokens, cost)."""
    from audiotag.tracking.runs import Tracking, experiment_link

    store = f"sqlite:///{server.tmp / 'work-b'}/mlflow.db"
    exp = MlflowClient(store).get_experiment_by_name("audiotag")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent, *_) = MlflowClient(store).search_runs(
        [exp.experiment_id], filter_string=f"tags.`prefect.flow_run_id` = '{runs['b']}'"
    )
    port = free_port()
    log = open(server.tmp / "mlflow-ui.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
        + ["--backend-store-uri", store, "--workers", "1"],
        env=server.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ui = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{ui}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (server.tmp / "mlflow-ui.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(1)
        link = experiment_link(Tracking(ui, exp.experiment_id, ""))
        with browser_page() as page:
            page.goto(link, wait_until="load")  # the MLflow UI polls: never network-idle
            try:
                page.get_by_text(parent.info.run_name).first.wait_for(timeout=60_000)
                text, url = page.inner_text("body"), page.url
            finally:
                page.screenshot(path=str(ARTIFACTS / "mlflow-experiment.png"), full_page=True)
    finally:
        stop(proc)
        log.close()
    assert f"/experiments/{exp.experiment_id}/runs" in url  # not sent on to an overview
    assert "Training runs" not in text  # the GenAI navigation's name for them
    assert "Tokens" not in text
