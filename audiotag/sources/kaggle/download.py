"""The competition archive: fetched once, verified, recorded, then unpacked.

The download makes the same two calls as ``KaggleApi.competition_download_files``:
kagglesdk's ``CompetitionApiService/DownloadDataFiles`` (a POST answered with a
redirect to the archive) and ``KaggleApi.download_file`` (a streamed write that
retries dropped connections and resumes with HTTP ``Range``). Doing the two steps
here rather than through that one method gives the archive's size before a byte
is written, for the disk-space check and to recognise an archive already present.

Nothing is fetched twice: a verified archive (size from Kaggle, zip CRCs checked)
is recorded beside it, and a complete extraction is recognised by
:func:`audiotag.sources.archive.unpack_competition`'s marker, even after the
archive has been deleted to save space. A partial archive resumes; a truncated or
corrupt one is fetched again.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path
from typing import Any

from audiotag.data.layout import COMPETITION, LayoutError, check_layout
from audiotag.sources.archive import MARKER, unpack_competition
from audiotag.sources.kaggle.client import _authenticate
from audiotag.sources.kaggle.credentials import (
    Credentials,
    _no_credentials_message,
    _read_json,
    _scrub,
    find_credentials,
)
from audiotag.sources.kaggle.disk import UNPACK_FACTOR, DiskSpaceError, check_disk_space
from audiotag.sources.kaggle.errors import (
    KaggleCredentialsError,
    KaggleError,
    KaggleNetworkError,
    _classify,
    _TransientError,
)
from audiotag.sources.kaggle.progress import DownloadProgress, _file_size, _watch, format_bytes

logger = logging.getLogger("audiotag.kaggle")

RECORD_SUFFIX = ".verified.json"


# -- archive records -----------------------------------------------------------------------


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


# -- the download --------------------------------------------------------------------------


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
    archive_dir: Path,
    competition: str = COMPETITION,
    *,
    attempts: int = 3,
    backoff_s: float = 2.0,
) -> Path:
    """Downloads the competition through the ``kaggle`` client and unpacks it.

    Args:
        data_dir: Where the dataset is unpacked in the FAT2019 layout.
        archive_dir: Where the archive is downloaded and kept (for resuming, and
            to recognise a finished download).
        competition: The competition's slug.
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
    archive = Path(archive_dir) / f"{competition}.zip"
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
