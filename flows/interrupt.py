"""Ctrl-C during `audiotag run`: the first stops running folds before their next batch
(their checkpoints kept), a second exits at once; the temporary Prefect server is
started deaf to it, and a stopped fold's failure is logged without a traceback."""

from __future__ import annotations

import logging
import os
import sys

# The exit status of a program stopped by SIGINT (128 + 2), as shells report it.
INTERRUPTED = 130
RESUME_LINE = (
    "audiotag: stopped (Ctrl-C). To resume, run the same command again: finished folds "
    "come from the cache, a stopped fold continues from its last checkpoint"
)


def stop_on_interrupt() -> None:
    """Ctrl-C asks the run to stop: running folds stop before their next batch, and the
    run ends with `RESUME_LINE`. A second Ctrl-C exits at once (the checkpoints are
    written atomically, so nothing half-written is left to trust)."""
    import signal

    from audiotag.stopping import request_stop, stop_requested

    def on_interrupt(signum: int, frame: object) -> None:
        if stop_requested():
            print(RESUME_LINE, file=sys.stderr, flush=True)
            from prefect.server.api.server import SubprocessASGIServer

            SubprocessASGIServer().stop()  # exiting at once skips the atexit that would
            os._exit(INTERRUPTED)
        request_stop()

    signal.signal(signal.SIGINT, on_interrupt)


def start_server_deaf_to_ctrl_c() -> None:
    """Starts the run's temporary Prefect server (when no API URL is set) so that Ctrl-C
    does not reach it.

    A terminal sends Ctrl-C's SIGINT to the whole foreground process group, the server
    Prefect starts among it: the server shut down at once and the stopping flow hung on
    its API. The server is started here, as the flow would start it, with SIGINT blocked
    in this thread: a child inherits the blocked mask, and the server's own handlers never
    see the signal. It still stops on SIGTERM at exit.
    """
    import signal

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        SubprocessASGIServer().start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _DropStopTraceback(logging.Filter):
    """A stopped fold's failure is logged as its one line, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from audiotag.stopping import StopRequested

        if record.exc_info and isinstance(record.exc_info[1], StopRequested):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_stop_tracebacks() -> None:
    """Puts `_DropStopTraceback` on every handler of Prefect's loggers (once configured)."""
    loggers = [logging.getLogger()] + [
        lg
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and name.split(".")[0] == "prefect"
    ]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if not any(isinstance(f, _DropStopTraceback) for f in handler.filters):
            handler.addFilter(_DropStopTraceback())
