"""A stand-in for the parts of Kaggle's API that ``competition_download_files`` talks to.

The real ``kaggle`` client (kagglesdk) sends every call as ``POST
<endpoint>/api/v1/<Service>/<Method>`` with a JSON body and either
``Authorization: Bearer <token>`` (API tokens) or HTTP Basic ``username:key``
(the older ``kaggle.json``). With ``KAGGLE_API_ENVIRONMENT=TEST`` kagglesdk's
endpoint is ``http://localhost:7777``, so the server listens there.

What it answers:

- ``security.OAuthService/IntrospectToken`` (``{"token"}``): ``{"active", "username"}``;
  the client introspects an API token before using it.
- ``competitions.CompetitionApiService/DownloadDataFiles`` (``{"competitionName"}``):
  a 302 to a signed storage URL, as Kaggle redirects to Cloud Storage; errors as
  Kaggle sends them, JSON ``{"code", "message"}`` with the HTTP status.
- ``GET /storage/<competition>.zip?sig=...``: the archive, with ``Content-Length``,
  ``ETag``, ``Last-Modified`` and ``Accept-Ranges``; honours ``Range`` (206) and
  ``If-Range``.

``mode`` switches the answers (``ok``, ``401``, ``403``, ``404``, ``500``,
``hangup``: close the connection without answering); ``drop_after`` drops the
download connection once after that many bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
PORT = 7777
USERNAME = "standin-user"
KEY = "standin-legacy-key-0123456789"
TOKEN = "KGAT_standin0123456789abcdef"
SIGNATURE = "standin-signature"
LAST_MODIFIED = formatdate(1_560_000_000, usegmt=True)  # June 2019, as the real data

RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."


class KaggleStandin:
    """A threaded HTTP server on 127.0.0.1:7777 serving one competition archive.

    Args:
        archive: The competition zip to serve.
        competition: Its competition slug.
        port: Where to listen (kagglesdk's TEST environment uses 7777).
    """

    def __init__(self, archive: Path, competition: str, port: int = PORT) -> None:
        self.competition = competition
        self.port = port
        self.mode = "ok"
        self.drop_after: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.served_bytes = 0
        self.auth_seen: list[str] = []
        self.ranges: list[str | None] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.serve(archive)

    def serve(self, archive: Path) -> None:
        """Serves ``archive`` from now on."""
        self.data = Path(archive).read_bytes()
        self.etag = f'"{hashlib.md5(self.data).hexdigest()}"'

    def reset(self) -> None:
        """Back to answering normally, with empty request logs."""
        with self._lock:
            self.mode = "ok"
            self.drop_after = None
            self.requests.clear()
            self.auth_seen.clear()
            self.ranges.clear()
            self.served_bytes = 0

    @property
    def downloads(self) -> int:
        """How many archive GETs were started (the client reads a redirect's headers first)."""
        return sum(1 for method, path in self.requests if method == "GET")

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer((HOST, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def authorized(header: str | None) -> bool:
    """Whether an ``Authorization`` header carries the stand-in's credentials."""
    if not header:
        return False
    kind, _, value = header.partition(" ")
    if kind == "Bearer":
        return value == TOKEN
    if kind == "Basic":
        try:
            return base64.b64decode(value).decode() == f"{USERNAME}:{KEY}"
        except ValueError:
            return False
    return False


class _Handler(BaseHTTPRequestHandler):
    """Records each request, then answers it: API calls by POST, the archive by GET."""

    standin: KaggleStandin

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pytest shows failures, not every request

    def do_POST(self) -> None:
        _record(self)
        _answer_api_call(self)

    def do_GET(self) -> None:
        _record(self)
        _answer_storage_get(self)


# -- helpers --


def _send_json(h: _Handler, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def _send_error(h: _Handler, status: int, message: str) -> None:
    _send_json(h, status, {"code": status, "message": message})


def _hang_up(h: _Handler) -> None:
    h.close_connection = True
    try:
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _record(h: _Handler) -> None:
    s = h.standin
    with s._lock:
        s.requests.append((h.command, urlsplit(h.path).path))
        auth = h.headers.get("Authorization")
        if auth:
            s.auth_seen.append(auth.partition(" ")[0])


# -- API calls --


def _answer_api_call(h: _Handler) -> None:
    """Failures by mode and credentials first, then the method named by the path."""
    s = h.standin
    length = int(h.headers.get("Content-Length") or 0)
    try:
        body = json.loads(h.rfile.read(length) or b"{}")
    except ValueError:
        _send_error(h, 400, "bad JSON")
        return
    if s.mode == "hangup":
        _hang_up(h)
        return
    if s.mode == "500":
        _send_error(h, 500, "Internal error")
        return
    if s.mode == "401" or not authorized(h.headers.get("Authorization")):
        _send_error(h, 401, "Unauthenticated")
        return
    path = urlsplit(h.path).path
    method = API_METHODS.get(path)
    if method is None:
        _send_error(h, 404, f"no such method {path}")
        return
    method(h, body)


def _introspect_token(h: _Handler, body: dict) -> None:
    active = body.get("token") == TOKEN
    _send_json(h, 200, {"active": active, "username": USERNAME if active else ""})


def _download_data_files(h: _Handler, body: dict) -> None:
    """A redirect to the signed storage URL, or why not."""
    s = h.standin
    if s.mode == "404" or body.get("competitionName") != s.competition:
        _send_error(h, 404, f"Competition {body.get('competitionName')!r} not found")
    elif s.mode == "403":
        _send_error(h, 403, RULES_MESSAGE)
    else:
        h.send_response(302)
        h.send_header("Location", f"/storage/{s.competition}.zip?sig={SIGNATURE}&expires=3600")
        h.send_header("Content-Length", "0")
        h.end_headers()


API_METHODS: dict[str, Callable[[_Handler, dict], None]] = {
    "/api/v1/security.OAuthService/IntrospectToken": _introspect_token,
    "/api/v1/competitions.CompetitionApiService/DownloadDataFiles": _download_data_files,
}


# -- the storage bucket --


def _answer_storage_get(h: _Handler) -> None:
    """The archive from the requested byte on, if the URL is the signed one."""
    s = h.standin
    url = urlsplit(h.path)
    if url.path != f"/storage/{s.competition}.zip":
        _send_error(h, 404, "no such object")
        return
    if parse_qs(url.query).get("sig") != [SIGNATURE]:
        _send_error(h, 403, "bad signature")
        return
    if s.mode == "hangup":
        _hang_up(h)
        return
    data = s.data  # one archive for the whole answer, even if serve() swaps it meanwhile
    start = _send_archive_status(h, data)
    if start is not None:
        _send_archive_from(h, data, start)


def _send_archive_status(h: _Handler, data: bytes) -> int | None:
    """Sends 200, 206 (a ``Range`` whose ``If-Range`` still holds) or 416 (past the end);
    returns the first byte to send, None after a 416."""
    s = h.standin
    size = len(data)
    rng = h.headers.get("Range")
    with s._lock:
        s.ranges.append(rng)
    if_range = h.headers.get("If-Range")
    if not (rng and rng.startswith("bytes=") and if_range in (None, s.etag, LAST_MODIFIED)):
        h.send_response(200)
        return 0
    start = int(rng.removeprefix("bytes=").split("-")[0])
    if start >= size:
        h.send_response(416)
        h.send_header("Content-Range", f"bytes */{size}")
        h.send_header("Content-Length", "0")
        h.end_headers()
        return None
    h.send_response(206)
    h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
    return start


def _send_archive_from(h: _Handler, data: bytes, start: int) -> None:
    """The archive's headers and bytes from ``start``; dropped once after ``drop_after``."""
    s = h.standin
    body = data[start:]
    h.send_header("Content-Type", "application/zip")
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Accept-Ranges", "bytes")
    h.send_header("ETag", s.etag)
    h.send_header("Last-Modified", LAST_MODIFIED)
    h.end_headers()
    with s._lock:
        drop, s.drop_after = s.drop_after, None
    if drop is not None:
        chunk = body[:drop]
        h.wfile.write(chunk)
        h.wfile.flush()
        with s._lock:
            s.served_bytes += len(chunk)
        _hang_up(h)
        return
    try:
        h.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        return  # the client read the headers only, as it does before a skip
    with s._lock:
        s.served_bytes += len(body)
