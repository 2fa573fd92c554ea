"""Which Prefect server a CLI run talks to: a running one (``--prefect-api URL`` or
``PREFECT_API_URL``), else the temporary one Prefect starts for the run, given time to
start on a busy machine; either way a failure to reach it is one line naming the fix.

Everything here sets environment variables and must run before ``prefect`` is imported:
Prefect reads its settings once, when it is imported.
"""

from __future__ import annotations

import os

from audiotag.errors import UsageError

API_ENV = "PREFECT_API_URL"
# Prefect's own setting (prefect/settings/models/server/ephemeral.py); its default, 20 s,
# is too short on two cores shared with other work.
STARTUP_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
STARTUP_DEFAULT_S = 120
# The start of the message of the RuntimeError SubprocessASGIServer.start raises.
STARTUP_TIMED_OUT = "Timed out while attempting to connect to ephemeral Prefect API server"
EXAMPLE_API = "http://127.0.0.1:4200/api"


# Our own servers (the temporary Prefect server, `make server`'s Prefect and MLflow)
# listen on loopback; a proxy from HTTP_PROXY/HTTPS_PROXY cannot reach them.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def bypass_proxies_for_loopback() -> None:
    """Adds the loopback names to ``NO_PROXY`` and ``no_proxy`` (keeping what is there),
    so that httpx and requests, which read either, never send a request for
    127.0.0.1 through a proxy: behind one, the CLI would otherwise wait the whole
    start-up time for its own temporary server and fail."""
    for name in ("NO_PROXY", "no_proxy"):
        have = [h.strip() for h in os.environ.get(name, "").split(",") if h.strip()]
        missing = [h for h in LOOPBACK if h not in have]
        if missing:
            os.environ[name] = ",".join(have + missing)


def use_prefect_server(api: str | None) -> str | None:
    """Points this process's Prefect at ``api`` (None: ``PREFECT_API_URL`` or, unset, a
    temporary server with ``STARTUP_ENV`` defaulting to ``STARTUP_DEFAULT_S``); returns
    the running server's URL, if any.

    Raises:
        UsageError: a running server was named and does not answer ``/health``.
    """
    bypass_proxies_for_loopback()
    if api:
        os.environ[API_ENV] = api
    url = os.environ.get(API_ENV, "").strip()
    if url:
        check_prefect_api(url)
        return url
    os.environ.setdefault(STARTUP_ENV, str(STARTUP_DEFAULT_S))
    return None


def check_prefect_api(url: str, timeout: float = 10.0) -> None:
    """Raises `UsageError` unless a Prefect server answers at ``url`` (its ``/health``)."""
    import httpx

    try:
        reply = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
        reply.raise_for_status()
    except httpx.HTTPError as err:
        cause = type(err).__name__ if not str(err) else str(err).splitlines()[0]
        raise UsageError(
            f"no Prefect server answers at {url} ({cause}): start one (`make server`), "
            f"fix the URL, or unset {API_ENV} and leave out --prefect-api to use a "
            "temporary server"
        ) from None


def startup_failure(err: BaseException) -> UsageError | None:
    """The one-line error for Prefect's temporary server failing to start, else None."""
    text = str(err)
    if not isinstance(err, RuntimeError) or not text.startswith(STARTUP_TIMED_OUT):
        return None
    waited = os.environ.get(STARTUP_ENV, "20")
    use = (
        f"or use a running server: --prefect-api {EXAMPLE_API} (or {API_ENV}; "
        "`make server` starts one)"
    )
    if "exited with code" in text:
        code = text.split("exited with code", 1)[1].split(".")[0].strip()
        return UsageError(
            f"Prefect's temporary server exited with code {code} before it answered "
            f"(--debug shows its output); {use}"
        )
    return UsageError(
        f"Prefect's temporary server did not answer within {waited} s (a busy machine "
        f"starts it slowly): raise {STARTUP_ENV} (now {waited}), {use}"
    )
