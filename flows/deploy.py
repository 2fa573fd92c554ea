"""After `prefect deploy --all` (`make deploy`): the weekly GPU retrain, deployed paused
(prefect.yaml), is scheduled only where GPU workers will run it (GPU=1); elsewhere it
stays paused (a redeploy of one that was resumed pauses it again), and said so."""

from __future__ import annotations

import sys

RETRAIN = "audiotag-train/audiotag-retrain"


def set_retrain_schedule(active: bool) -> str:
    """Activates or pauses every schedule of the GPU retrain deployment on the Prefect
    server of ``PREFECT_API_URL`` (Prefect's client: it retries a busy server's 503);
    returns the line that says what it did."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(RETRAIN)
        for schedule in dep.schedules:
            client.update_deployment_schedule(dep.id, schedule.id, active=active)
    if active:
        return f"make deploy: the weekly GPU retrain ({RETRAIN}) is scheduled on pool " + str(
            dep.work_pool_name
        )
    return (
        f"make deploy: the weekly GPU retrain ({RETRAIN}) is deployed with its schedule "
        f"paused (GPU=1 keeps it scheduled, for a machine whose {dep.work_pool_name} pool "
        "has workers; or resume it in the UI)"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    gpu = bool(args) and args[0].strip() == "1"
    try:
        print(set_retrain_schedule(active=gpu))
    except Exception as err:  # noqa: BLE001 - one line for make's output
        cause = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"make deploy: the schedule of {RETRAIN} was not set: {cause}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
