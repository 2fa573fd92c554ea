"""After `prefect deploy --all` (`make deploy`): the weekly GPU retrain stays scheduled
only where GPU workers will run it; elsewhere its schedule is paused, and said so."""

from __future__ import annotations

import os
import sys

import httpx

RETRAIN = "audiotag-train/audiotag-retrain"


def set_retrain_schedule(api: str, active: bool) -> str:
    """Activates or pauses every schedule of the GPU retrain deployment on the Prefect
    server at ``api``; returns the line that says what it did."""
    with httpx.Client(base_url=api.rstrip("/"), timeout=30) as c:
        dep = c.get(f"/deployments/name/{RETRAIN}")
        dep.raise_for_status()
        body = dep.json()
        for schedule in body["schedules"]:
            r = c.patch(
                f"/deployments/{body['id']}/schedules/{schedule['id']}", json={"active": active}
            )
            r.raise_for_status()
    pool = body.get("work_pool_name")
    if active:
        return f"make deploy: the weekly GPU retrain ({RETRAIN}) is scheduled on pool {pool}"
    return (
        f"make deploy: the weekly GPU retrain ({RETRAIN}) is deployed with its schedule "
        f"paused (GPU=1 keeps it scheduled, for a machine whose {pool} pool has workers; "
        "or resume it in the UI)"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    gpu = (args[0] if args else os.environ.get("GPU", "0")).strip() == "1"
    api = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    try:
        print(set_retrain_schedule(api, active=gpu))
    except httpx.HTTPError as err:
        cause = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"make deploy: the schedule of {RETRAIN} on {api} was not set: {cause}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
