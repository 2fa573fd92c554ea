"""deployments/: the GPU work-pool templates and the worker image, as an operator relies on them."""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deployments"
TEMPLATES = {
    "docker": DEPLOY / "docker-gpu-job-template.json",
    "kubernetes": DEPLOY / "kubernetes-gpu-job-template.json",
}


def load(kind: str) -> dict[str, Any]:
    return json.loads(TEMPLATES[kind].read_text())


def defaults(template: dict[str, Any]) -> dict[str, Any]:
    """The variables' defaults, as a worker takes them (a None default counts as unset)."""
    props = template["variables"]["properties"]
    return {k: v["default"] for k, v in props.items() if v.get("default") is not None}


def render(template: dict[str, Any], job_variables: dict[str, Any] | None = None) -> dict:
    """The job configuration a worker builds for a flow run, by Prefect's own templating."""
    from prefect.utilities.templating import apply_values

    values = {**defaults(template), **(job_variables or {})}
    return apply_values(copy.deepcopy(template["job_configuration"]), values)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deployments/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in dockerfile():
        if instr == "ENV":
            for key, value in re.findall(r"(\w+)=(\S*)", args):
                env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), value)
    return env


def audiotag_home() -> str:
    return image_env()["AUDIOTAG_HOME"]


@pytest.mark.parametrize("kind", TEMPLATES)
def test_template_has_the_structure_prefect_expects(kind: str) -> None:
    from prefect.server.schemas.actions import validate_base_job_template
    from prefect.utilities.schema_tools import validate
    from prefect.utilities.templating import PlaceholderType, find_placeholders

    template = load(kind)
    assert set(template) == {"job_configuration", "variables"}
    assert template["variables"]["type"] == "object"
    used = {
        p.name
        for p in find_placeholders(template["job_configuration"])
        if p.type is PlaceholderType.STANDARD
    }
    assert used <= set(template["variables"]["properties"])
    validate_base_job_template(template)  # the server's own check
    # Every default fits its own schema, as a deployment's job variables must.
    validate(defaults(template), template["variables"], raise_on_error=True, ignore_required=True)


def test_docker_flow_run_container_asks_for_one_gpu() -> None:
    from docker.types import HostConfig

    kwargs = render(load("docker"))["container_create_kwargs"]
    assert kwargs == {"device_requests": [{"count": 1, "capabilities": [["gpu"]]}]}
    # What docker-py sends to the daemon: the equivalent of `docker run --gpus 1`.
    host = HostConfig(version="1.44", **kwargs)
    assert [(r["Count"], r["Capabilities"]) for r in host["DeviceRequests"]] == [(1, [["gpu"]])]
    # A deployment can ask for every GPU of its host.
    every = render(load("docker"), {"gpus": -1})["container_create_kwargs"]
    assert every["device_requests"][0]["count"] == -1


def test_kubernetes_job_container_is_limited_to_one_gpu() -> None:
    from prefect.utilities.schema_tools import ValidationError, validate

    template = load("kubernetes")
    pod = render(template)["job_manifest"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "prefect-job"  # the name the kubernetes worker looks for
    # Unset cpu and memory drop out; the GPU limit stays (the request defaults to it).
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    two = render(template, {"gpus": 2})["job_manifest"]["spec"]["template"]["spec"]
    assert two["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 2}
    with pytest.raises(ValidationError):
        validate({"gpus": 0}, template["variables"], raise_on_error=True, ignore_required=True)
    # The Kaggle token comes from a Secret, never from the job's plain env or parameters.
    assert container["envFrom"] == [{"secretRef": {"name": "audiotag-kaggle", "optional": True}}]
    assert not any(k.startswith("KAGGLE") for k in render(template)["env"])


def image_path(path: str) -> str:
    """``path`` in the image: relative to AUDIOTAG_HOME, through the links the image makes."""
    runs = " ".join(args for instr, args in dockerfile() if instr == "RUN")
    links = {
        os.path.normpath(dst.strip('"').replace("$AUDIOTAG_HOME", audiotag_home())): src
        for src, dst in re.findall(r"ln -s (\S+) (\S+)", runs)
    }
    path = os.path.normpath(os.path.join(audiotag_home(), path))
    for link, target in links.items():
        if path == link or path.startswith(link + "/"):
            return target + path[len(link) :]
    return path


def test_gpu_flow_runs_mount_the_shared_work_dir_where_deployments_put_it() -> None:
    docker_mounts = {v.split(":")[1] for v in defaults(load("docker"))["volumes"]}
    pod = render(load("kubernetes"))["job_manifest"]["spec"]["template"]["spec"]
    k8s_mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert claims == {"audiotag-work": "audiotag-work"}

    def shared(path: str, mounts: set[str]) -> bool:
        return any(path == m or path.startswith(m + "/") for m in mounts)

    # The work dir of every training deployment on the GPU pool must be on the mounted
    # volume, or a new container finds no cached folds. The flow's own default too.
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    workdirs = {
        d["name"]: d.get("parameters", {}).get("workdir")
        for d in deployments
        if d["entrypoint"].endswith(":train_flow") and d["work_pool"]["name"] == "audiotag-gpu"
    }
    assert all(workdirs.values()), "a GPU deployment without a workdir parameter"
    from flows.train import train_flow

    workdirs["(flow default)"] = inspect.signature(train_flow.fn).parameters["workdir"].default
    for name, workdir in workdirs.items():
        path = image_path(workdir)
        assert shared(path, docker_mounts) and shared(path, k8s_mounts), (name, path)
    # Persisted results go inside it too.
    results = image_env()["PREFECT_LOCAL_STORAGE_PATH"]
    assert shared(results, docker_mounts) and shared(results, k8s_mounts)


def test_templates_default_to_the_image_the_readme_builds() -> None:
    readme = (DEPLOY / "README.md").read_text()
    built = re.search(r"docker build -f deployments/Dockerfile -t (\S+) \.", readme)
    assert built
    for kind in TEMPLATES:
        assert defaults(load(kind))["image"] == built.group(1)


def test_dockerfile_installs_the_project_and_sets_audiotag_home() -> None:
    steps = dockerfile()
    home = audiotag_home()
    assert home.startswith("/")
    workdirs = [args for instr, args in steps if instr == "WORKDIR"]
    assert workdirs and workdirs[-1] in {home, "$AUDIOTAG_HOME", "${AUDIOTAG_HOME}"}
    runs = " ".join(args for instr, args in steps if instr == "RUN")
    assert re.search(r"pip install (--no-deps )?\.(\s|$)", runs)

    # The code the project installs, and every deployment's entrypoint, is in the image
    # and not kept out of the build context.
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include = \[(.*?)\]", pyproject)
    assert include
    packages = {p.strip(' "*') for p in include.group(1).split(",")}
    prefect_yaml = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entry_dirs = {d["entrypoint"].split("/")[0] for d in prefect_yaml["deployments"]}
    copied = {
        src.rstrip("/") for instr, args in steps if instr == "COPY" for src in args.split()[:-1]
    }
    allowed = {
        ln[1:].strip().rstrip("/")
        for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if ln.startswith("!")
    }
    needed = packages | entry_dirs | {"pyproject.toml", "README.md"}
    assert needed <= copied
    assert needed <= allowed

    # The deployments start each run in AUDIOTAG_HOME.
    (pull,) = prefect_yaml["pull"]
    step = pull["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == "{{ $AUDIOTAG_HOME }}"

    users = [args for instr, args in steps if instr == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}


@pytest.mark.slow
def test_a_prefect_server_accepts_the_pools(isolated_env: Path) -> None:
    """`prefect work-pool create` as the README has it, against a real Prefect server."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    broken = load("docker")
    broken["job_configuration"]["mem_limit"] = "{{ memory }}"  # not a declared variable
    (isolated_env / "broken.json").write_text(json.dumps(broken))
    prefect = [sys.executable, "-m", "prefect"]
    with prefect_test_harness(server_startup_timeout=120):
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*prefect, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
            )

        for kind, path in TEMPLATES.items():
            created = cli(
                "work-pool", "create", f"audiotag-gpu-{kind}", "--type", kind,
                "--base-job-template", str(path.relative_to(ROOT)),
            )  # fmt: skip
            assert created.returncode == 0, created.stdout + created.stderr
            shown = cli("work-pool", "inspect", f"audiotag-gpu-{kind}")
            assert f"type='{kind}'" in shown.stdout
            assert "nvidia.com/gpu" in shown.stdout or "device_requests" in shown.stdout
        refused = cli(
            "work-pool", "create", "broken", "--type", "docker",
            "--base-job-template", str(isolated_env / "broken.json"),
        )  # fmt: skip
        assert refused.returncode != 0
        assert "memory" in refused.stdout + refused.stderr
