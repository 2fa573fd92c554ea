"""What can go wrong talking to Kaggle, each failure with a message that says what to do.

The client raises ``requests`` and ``urllib3`` exceptions; :func:`_classify`
maps them to audiotag's: final ones (:class:`KaggleAccessError` and its
subclass for credentials, :class:`~audiotag.sources.kaggle.disk.DiskSpaceError`)
and :class:`_TransientError`, which the download retries.
"""

from __future__ import annotations

import errno

from audiotag.errors import UsageError
from audiotag.sources.kaggle.credentials import RULES_URL, TOKEN_URL, Credentials, _scrub
from audiotag.sources.kaggle.disk import DiskSpaceError


class KaggleError(RuntimeError, UsageError):
    """Fetching from Kaggle failed; the message says what to do."""


class KaggleAccessError(KaggleError):
    """Kaggle refused the request (HTTP ``status``)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KaggleCredentialsError(KaggleAccessError):
    """No Kaggle credentials, or Kaggle did not accept them."""


class KaggleNetworkError(KaggleError):
    """Kaggle could not be reached or the transfer kept failing (worth retrying later)."""


class KaggleUnreachableError(KaggleNetworkError):
    """No connection to Kaggle (or the proxy) could be opened at all: the machine is
    offline or a proxy is wrong. Retrying in seconds does not help, so it is final."""


class _TransientError(Exception):
    """A failure worth another attempt (connection, timeout, 5xx, corrupt transfer)."""


def _http_failure(err: Exception, competition: str, creds: Credentials) -> Exception:
    """Our exception for an HTTP error from the client (transient ones to retry)."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    said = _scrub(str(err), creds.secrets)
    page = f"https://www.kaggle.com/c/{competition}"
    if status == 401:
        return KaggleCredentialsError(
            f"Kaggle rejected the credentials from {creds.source} (401 Unauthorized): they "
            f"are invalid, expired or revoked. Create a new token at {TOKEN_URL} and put it "
            "where the old one was.",
            status=401,
        )
    if status == 403:
        return KaggleAccessError(
            f"Kaggle refused the download of {competition!r} (403 Forbidden: {said}). The "
            "account behind your credentials must accept the competition rules first: sign "
            f"in as that account, open {RULES_URL.format(competition=competition)}, accept "
            "them, and run again.",
            status=403,
        )
    if status == 404:
        return KaggleAccessError(
            f"Kaggle has no competition {competition!r} (404 Not Found: {said}); check the "
            f"name, the last part of its address ({page}).",
            status=404,
        )
    if status is not None and (status == 429 or status >= 500):
        return _TransientError(f"Kaggle answered {status} ({said})")
    return KaggleAccessError(f"Kaggle refused the request ({status}: {said})", status=status)


def _classify(err: Exception, competition: str, creds: Credentials) -> Exception | None:
    """Maps a client-side exception to ours; None when it is not a known kind."""
    import requests
    import urllib3.exceptions

    if isinstance(err, requests.exceptions.HTTPError):
        return _http_failure(err, competition, creds)
    network = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
    )
    if isinstance(err, network):
        said = _scrub(f"{type(err).__name__}: {err}", creds.secrets)
        if _never_connected(err):
            return KaggleUnreachableError(
                f"could not connect to Kaggle{' through the proxy' if _via_proxy(err) else ''}"
                f" to download {competition!r} ({said}). This machine looks offline: check "
                "the network connection (and HTTPS_PROXY behind a proxy), or bring the "
                "dataset as a directory or the competition zip with --source."
            )
        return _TransientError(said)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return DiskSpaceError(
            f"the disk filled up while downloading ({err.strerror}): free some space and run "
            "again; the download resumes where it stopped"
        )
    return None


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and what it wraps: ``__cause__``/``__context__``, and the ``reason`` of
    urllib3's MaxRetryError (which requests' ConnectionError carries as its argument)."""
    seen: list[BaseException] = []
    todo: list[object] = [err]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args[:1]]
    return seen


def _never_connected(err: BaseException) -> bool:
    """The failure is a connection that never opened (refused, no route, no DNS name),
    not one that broke off mid-transfer."""
    import urllib3.exceptions

    return any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in _causes(err))


def _via_proxy(err: BaseException) -> bool:
    import urllib3.exceptions

    return any(isinstance(e, urllib3.exceptions.ProxyError) for e in _causes(err))
