"""``--source kaggle``: the competition archive, fetched through the ``kaggle`` client.

The download makes the same two calls as ``KaggleApi.competition_download_files``:
kagglesdk's ``CompetitionApiService/DownloadDataFiles`` (a POST answered with a
redirect to the archive) and ``KaggleApi.download_file`` (a streamed write that
retries dropped connections and resumes with HTTP ``Range``). Doing the two steps
here rather than through that one method gives the archive's size before a byte
is written, for the disk-space check and to recognise an archive already present.

``import kaggle`` authenticates at import time, so it is imported only inside
:func:`download_competition`: audiotag imports and runs from a local source
without a Kaggle account. Credentials are whatever the client supports
(``KAGGLE_API_TOKEN``, ``~/.kaggle/access_token``, ``kaggle.json``,
``KAGGLE_USERNAME`` with ``KAGGLE_KEY``, ``kaggle auth login``); their values are
never logged, and are scrubbed from any error text that passes through here.

Nothing is fetched twice: a verified archive (size from Kaggle, zip CRCs checked)
is recorded beside it, and a complete extraction is recognised by
:func:`audiotag.sources.local.unpack_competition`'s marker, even after the archive has
been deleted to save space. A partial archive resumes; a truncated or corrupt one
is fetched again.

Progress goes to the ``audiotag.kaggle`` logger at INFO every 5 % or 5 s.
``KAGGLE_API_ENVIRONMENT`` (kagglesdk's setting: ``TEST`` is ``localhost:7777``)
chooses the server.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import errno
import io
import json
import logging
import os
import shutil
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiotag.data.layout import COMPETITION, LayoutError, check_layout
from audiotag.sources.local import MARKER, unpack_competition

logger = logging.getLogger("audiotag.kaggle")

TOKEN_URL = "https://www.kaggle.com/settings/api"
RULES_URL = "https://www.kaggle.com/c/{competition}/rules"
# Unpacking writes the outer members (the nested zips, about the archive's size)
# and then each nested zip's files, deleting each nested zip once it is unpacked:
# at the peak about twice the archive's size on top of the archive itself.
UNPACK_FACTOR = 2.0
SKIP_DISK_CHECK_ENV = "AUDIOTAG_SKIP_DISK_CHECK"
RECORD_SUFFIX = ".verified.json"


class KaggleError(RuntimeError):
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


class DiskSpaceError(RuntimeError):
    """Not enough free disk space for the download and its extraction."""


class _TransientError(Exception):
    """A failure worth another attempt (connection, timeout, 5xx, corrupt transfer)."""


# -- credentials ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Where the client will find credentials, in words, and the values to keep secret."""

    source: str
    secrets: tuple[str, ...]


def kaggle_config_dir() -> Path:
    """The directory the client reads ``kaggle.json`` from (as ``KaggleApi`` decides it)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    home = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not home.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(xdg) / "kaggle"
    return home


def _read_text(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_credentials() -> Credentials | None:
    """The credentials the ``kaggle`` client would use, without importing it.

    In the client's order: an API token (``KAGGLE_API_TOKEN``, its value or a file
    it names, then ``~/.kaggle/access_token``), the legacy key (``kaggle.json`` in
    the config directory, overridden by ``KAGGLE_USERNAME``/``KAGGLE_KEY``), then
    ``kaggle auth login``'s ``~/.kaggle/credentials.json``. ``secrets`` holds every
    secret value found anywhere, for scrubbing.
    """
    found: list[str] = []
    secrets: list[str] = []
    kaggle_home = Path.home() / ".kaggle"

    env_token = os.environ.get("KAGGLE_API_TOKEN")
    if env_token:
        token_file = Path(env_token).expanduser()
        if token_file.is_file():
            value = _read_text(token_file)
            if value:
                secrets.append(value)
                found.append(f"the token file {token_file} named by KAGGLE_API_TOKEN")
        else:
            secrets.append(env_token)
            found.append("the KAGGLE_API_TOKEN environment variable")
    for name in ("access_token", "access_token.txt"):
        value = _read_text(kaggle_home / name)
        if value:
            secrets.append(value)
            found.append(str(kaggle_home / name))

    config_file = kaggle_config_dir() / "kaggle.json"
    legacy = {k: str(v) for k, v in _read_json(config_file).items() if k in ("username", "key")}
    from_env = {
        k: os.environ[f"KAGGLE_{k.upper()}"]
        for k in ("username", "key")
        if os.environ.get(f"KAGGLE_{k.upper()}")
    }
    if legacy.get("key"):
        secrets.append(legacy["key"])
    legacy.update(from_env)
    if legacy.get("key"):
        secrets.append(legacy["key"])
    if legacy.get("username") and legacy.get("key"):
        pair = f"{legacy['username']}:{legacy['key']}"
        secrets.append(base64.b64encode(pair.encode()).decode())  # a Basic auth header
        where = "KAGGLE_USERNAME/KAGGLE_KEY" if from_env else str(config_file)
        found.append(where)

    oauth = _read_json(kaggle_home / "credentials.json")
    tokens = [str(v) for k, v in oauth.items() if "token" in k.lower() and v]
    if tokens:
        secrets.extend(tokens)
        found.append(f"{kaggle_home / 'credentials.json'} (kaggle auth login)")

    if not found:
        return None
    return Credentials(found[0], tuple(s for s in secrets if len(s) >= 4))


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _no_credentials_message(competition: str) -> str:
    return (
        "no Kaggle credentials found, so the competition data cannot be downloaded.\n"
        "To get an API token (a free Kaggle account is needed):\n"
        f"  1. sign in at https://www.kaggle.com and open Settings > API ({TOKEN_URL});\n"
        '  2. click "Generate New Token" and copy the token;\n'
        "  3. either `export KAGGLE_API_TOKEN=<token>`, or save it in ~/.kaggle/access_token\n"
        "     (chmod 600 ~/.kaggle/access_token). The older key works too: put the\n"
        f'     kaggle.json from "Create Legacy API Key" in {kaggle_config_dir()}/kaggle.json,\n'
        "     or export KAGGLE_USERNAME and KAGGLE_KEY.\n"
        f"Then accept the competition rules at {RULES_URL.format(competition=competition)} "
        "and run again.\n"
        "Without an account, use --source demo, a dataset directory or the competition zip."
    )


# -- progress ------------------------------------------------------------------------------


def format_bytes(n: float) -> str:
    """``1_234_567`` -> ``'1.2 MB'`` (decimal units)."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB"


class DownloadProgress:
    """Logs a download's bytes, share and rate at INFO every ``step`` of it or ``every_s``.

    Args:
        name: What is downloaded (the archive's name).
        total: Its size in bytes, if known.
        done: Bytes already there when the download starts (a resume).
        clock: Seconds, monotonic (a fake one in tests).
        every_s: The longest pause between two lines.
        step: The share of ``total`` between two lines.
    """

    def __init__(
        self,
        name: str,
        total: int | None,
        done: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 5.0,
        step: float = 0.05,
    ) -> None:
        self.name, self.total, self.clock = name, total, clock
        self.every_s, self.step = every_s, step
        self.start_t = self.last_t = clock()
        self.start_done = self.last_done = done
        self.last_step = self._step(done)

    def _step(self, done: int) -> int:
        return int(done / self.total / self.step) if self.total else 0

    def update(self, done: int) -> str | None:
        """Records ``done`` bytes; logs and returns a line when one is due."""
        now = self.clock()
        if done < self.last_done:  # the client started the file over
            self.start_done = self.last_done = done
            self.start_t = self.last_t = now
            self.last_step = self._step(done)
            return None
        step = self._step(done)
        if now - self.last_t < self.every_s and step <= self.last_step:
            return None
        rate = (done - self.last_done) / max(now - self.last_t, 1e-9)
        line = f"{self.name}: {format_bytes(done)}"
        if self.total:
            line += f" of {format_bytes(self.total)} ({100 * done / self.total:.0f}%)"
        line += f", {rate / 1e6:.1f} MB/s"
        if self.total and rate > 0 and done < self.total:
            line += f", about {_format_duration((self.total - done) / rate)} left"
        logger.info("%s", line)
        self.last_t, self.last_done, self.last_step = now, done, step
        return line

    def finish(self, done: int) -> str:
        """Logs and returns the summary line."""
        seconds = max(self.clock() - self.start_t, 1e-9)
        fetched = max(done - self.start_done, 0)
        line = (
            f"{self.name}: downloaded {format_bytes(fetched)} in {seconds:.1f} s "
            f"({fetched / seconds / 1e6:.1f} MB/s); {format_bytes(done)} on disk"
        )
        logger.info("%s", line)
        return line


def _format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextlib.contextmanager
def _watch(path: Path, progress: DownloadProgress, interval: float = 0.5) -> Iterator[None]:
    """Polls ``path``'s size into ``progress`` from a thread while the body runs.

    The thread runs in a copy of the caller's context, so loggers that attach
    records to the current (Prefect) run still find it.
    """
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            progress.update(_file_size(path))

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(poll,), name="kaggle-progress", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- disk space and completeness -----------------------------------------------------------


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(needs: list[tuple[Path, int, str]]) -> None:
    """Raises DiskSpaceError unless every filesystem has room for what goes onto it.

    Args:
        needs: ``(where, bytes, what for)`` items; items on one filesystem add up.
    """
    if os.environ.get(SKIP_DISK_CHECK_ENV) == "1":
        return
    by_device: dict[int, tuple[Path, int, list[str]]] = {}
    for where, nbytes, what in needs:
        anchor = _existing(where)
        dev = anchor.stat().st_dev
        first, total, parts = by_device.get(dev, (anchor, 0, []))
        by_device[dev] = (first, total + nbytes, [*parts, f"{format_bytes(nbytes)} {what}"])
    for anchor, need, parts in by_device.values():
        free = shutil.disk_usage(anchor).free
        if free < need:
            raise DiskSpaceError(
                f"not enough free disk space in {anchor}: {format_bytes(need)} needed "
                f"({' + '.join(parts)}), {format_bytes(free)} free. Free up at least "
                f"{format_bytes(need - free)} or choose a --workdir on a larger disk "
                f"(set {SKIP_DISK_CHECK_ENV}=1 to skip this check)."
            )


def _zip_ok(path: Path) -> bool:
    """Whether ``path`` is a readable zip whose every member passes its CRC check."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return False


def _record_path(archive: Path) -> Path:
    return archive.with_name(archive.name + RECORD_SUFFIX)


def _write_record(archive: Path, competition: str, etag: str | None) -> None:
    st = archive.stat()
    record = {
        "competition": competition,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "etag": etag,
    }
    _record_path(archive).write_text(json.dumps(record))


def _archive_verified(archive: Path) -> bool:
    """A complete archive checked earlier and unchanged since (no CRC pass again)."""
    record = _read_json(_record_path(archive))
    try:
        st = archive.stat()
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (record.get("size"), record.get("mtime_ns"))


def extraction_complete(archive: Path, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a complete extraction of the verified ``archive``.

    True also when the archive was deleted after unpacking; false when an archive
    of another size or date now lies there (a truncated or newer one).
    """
    record = _read_json(_record_path(archive))
    marker = _read_json(data_dir / MARKER)
    if not record or marker.get("archive") != str(archive.resolve()):
        return False
    if marker.get("size") != record.get("size"):
        return False
    if archive.exists():
        st = archive.stat()
        if (st.st_size, st.st_mtime_ns) != (marker.get("size"), marker.get("mtime_ns")):
            return False
    try:
        check_layout(data_dir)
    except LayoutError:
        return False
    return True


# -- the client ----------------------------------------------------------------------------

_API_CLASS: type | None = None


def _api_class() -> type:
    """``KaggleApi`` with clients that follow kagglesdk's ``KAGGLE_API_ENVIRONMENT``.

    ``KaggleApi.build_kaggle_client`` picks the endpoint from command-line flags
    and turns on header echoing with ``VERBOSE``; this one asks kagglesdk's own
    ``get_env()`` (PROD unless the variable says otherwise) and never echoes
    headers, which would print the token.
    """
    global _API_CLASS
    if _API_CLASS is None:
        with contextlib.redirect_stdout(io.StringIO()):
            import kaggle  # noqa: F401  (authenticates at import; a failure there is ignored)
        from kaggle.api.kaggle_api_extended import KaggleApi
        from kagglesdk import KaggleClient
        from kagglesdk.kaggle_env import get_env

        class _AudiotagKaggleApi(KaggleApi):
            def build_kaggle_client(self) -> KaggleClient:
                return KaggleClient(
                    env=get_env(),
                    verbose=False,
                    username=self.config_values.get(self.CONFIG_NAME_USER),
                    password=self.config_values.get(self.CONFIG_NAME_KEY),
                    api_token=self.config_values.get(self.CONFIG_NAME_TOKEN),
                    response_processor=self.get_response_processor(),
                )

        _API_CLASS = _AudiotagKaggleApi
    return _API_CLASS


def _authenticate(creds: Credentials) -> Any:
    api = _api_class()()
    config_dir = kaggle_config_dir()  # KaggleApi fixes it at import; follow HOME now
    api.config_dir = str(config_dir)
    api.config = str(config_dir / "kaggle.json")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            api.authenticate()
    except SystemExit:
        raise KaggleCredentialsError(
            f"Kaggle did not accept the credentials from {creds.source}: the token is "
            f"invalid, expired or revoked. Create a new one at {TOKEN_URL} "
            '("Generate New Token") and put it where the old one was.',
            status=401,
        ) from None
    finally:
        for line in out.getvalue().splitlines():
            if line.startswith("Warning"):
                logger.warning("kaggle: %s", _scrub(line, creds.secrets))
    return api


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
        return _TransientError(_scrub(f"{type(err).__name__}: {err}", creds.secrets))
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return DiskSpaceError(
            f"the disk filled up while downloading ({err.strerror}): free some space and run "
            "again; the download resumes where it stopped"
        )
    return None


def _fetch(api: Any, competition: str, archive: Path, data_dir: Path) -> None:
    """One attempt: asks Kaggle for the archive and downloads what is missing."""
    from kagglesdk.competitions.types.competition_api_service import (
        ApiDownloadDataFilesRequest,
    )

    with api.build_kaggle_client() as client:
        request = ApiDownloadDataFilesRequest()
        request.competition_name = competition
        response = client.competitions.competition_api_client.download_data_files(request)
        try:
            length = response.headers.get("Content-Length")
            size = int(length) if length else None
            have = _file_size(archive)
            if size is not None and have == size and _zip_ok(archive):
                logger.info("%s: complete archive already in %s", competition, archive.parent)
            else:
                if size is None:
                    logger.warning("Kaggle did not say the archive's size; disk space unchecked")
                else:
                    check_disk_space(
                        [
                            (archive.parent, max(size - have, 0), "to download"),
                            (data_dir, int(UNPACK_FACTOR * size), "to unpack"),
                        ]
                    )
                archive.parent.mkdir(parents=True, exist_ok=True)
                logger.info(
                    "downloading %s (%s) from Kaggle into %s",
                    archive.name,
                    format_bytes(size) if size is not None else "size unknown",
                    archive.parent,
                )
                progress = DownloadProgress(archive.name, size, have)
                with _watch(archive, progress):
                    api.download_file(
                        response, str(archive), client.http_client(), quiet=True, resume=True
                    )
                progress.finish(_file_size(archive))
                logger.info("checking the archive's integrity (every member's CRC)")
                if not _zip_ok(archive):
                    archive.unlink(missing_ok=True)
                    raise _TransientError("the downloaded archive failed its zip integrity check")
            etag = response.headers.get("ETag")
        finally:
            response.close()
    _write_record(archive, competition, etag)


def download_competition(
    data_dir: Path,
    competition: str = COMPETITION,
    *,
    archive_dir: Path | None = None,
    attempts: int = 3,
    backoff_s: float = 2.0,
) -> Path:
    """Downloads the competition through the ``kaggle`` client and unpacks it.

    Args:
        data_dir: Where the dataset is unpacked in the FAT2019 layout.
        competition: The competition's slug.
        archive_dir: Where the archive is kept; ``<data_dir>/../kaggle-source`` if None.
        attempts: Tries for network failures, ``backoff_s * 2**k`` seconds apart
            (the client also retries a dropped transfer itself, resuming it).
        backoff_s: The first pause between tries.

    Returns:
        ``data_dir``.

    Raises:
        KaggleCredentialsError: No credentials, or Kaggle rejected them (401).
        KaggleAccessError: Rules not accepted (403), no such competition (404), ...
        KaggleNetworkError: Kaggle unreachable, or the transfer kept failing.
        DiskSpaceError: Too little free space, checked before downloading.
        UnsafeArchiveError: An archive member would land outside ``data_dir``.
    """
    data_dir = Path(data_dir)
    archive_dir = (
        Path(archive_dir) if archive_dir is not None else data_dir.parent / "kaggle-source"
    )
    archive = archive_dir / f"{competition}.zip"
    if extraction_complete(archive, data_dir):
        logger.info("%s: already downloaded and unpacked in %s", competition, data_dir)
        return data_dir
    if _archive_verified(archive):
        logger.info("%s: verified archive %s found; not downloading it again", competition, archive)
        check_disk_space([(data_dir, int(UNPACK_FACTOR * _file_size(archive)), "to unpack")])
    else:
        creds = find_credentials()
        if creds is None:
            raise KaggleCredentialsError(_no_credentials_message(competition))
        logger.info("using Kaggle credentials from %s", creds.source)
        _download(archive, data_dir, competition, creds, attempts, backoff_s)
    logger.info("unpacking %s into %s", archive.name, data_dir)
    return unpack_competition(archive, data_dir)


def _download(
    archive: Path,
    data_dir: Path,
    competition: str,
    creds: Credentials,
    attempts: int,
    backoff_s: float,
) -> None:
    api = None
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            if api is None:
                api = _authenticate(creds)
            _fetch(api, competition, archive, data_dir)
            return
        except (KaggleError, DiskSpaceError):
            raise
        except _TransientError as err:
            last = str(err)
        except Exception as err:
            mapped = _classify(err, competition, creds)
            if mapped is None:
                if any(s in str(err) for s in creds.secrets):
                    raise KaggleError(
                        _scrub(f"{type(err).__name__}: {err}", creds.secrets)
                    ) from None
                raise
            if not isinstance(mapped, _TransientError):
                raise mapped from None
            last = str(mapped)
        if attempt < attempts:
            delay = backoff_s * 2 ** (attempt - 1)
            logger.warning(
                "Kaggle download attempt %d of %d failed (%s); trying again in %.0f s",
                attempt,
                attempts,
                last,
                delay,
            )
            time.sleep(delay)
    raise KaggleNetworkError(
        f"could not download {competition!r} from Kaggle after {attempts} attempts; the last "
        f"failure: {last}. Check the network connection (and HTTPS_PROXY behind a proxy) "
        "and run again: what was downloaded is kept and the download resumes."
    )
