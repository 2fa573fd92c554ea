"""The one error type for an expected failure: a cause the user can act on.

Its message names the cause and what to do, on one line. The CLI prints it as
``audiotag: <message>`` without a traceback (``audiotag --debug`` shows it), so an
expected error is never buried in a stack of tracebacks. Errors of the library that
are such causes (a dataset not in the layout, a tracking server that is down, too
little disk space, a fold another run holds) derive from it as well.
"""

from __future__ import annotations


class UsageError(Exception):
    """An expected failure whose message names its cause and what to do about it."""
