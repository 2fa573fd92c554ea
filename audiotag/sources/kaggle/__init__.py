"""``--source kaggle``: the competition archive, fetched through the ``kaggle`` client.

One module per concern:

* :mod:`~audiotag.sources.kaggle.credentials`: which credentials the client will
  use (found without importing it) and scrubbing their values from any text;
* :mod:`~audiotag.sources.kaggle.client`: the client itself, imported only when a
  download starts, since ``import kaggle`` authenticates;
* :mod:`~audiotag.sources.kaggle.errors`: the client's failures classified into
  final ones, each saying what to do, and transient ones to retry;
* :mod:`~audiotag.sources.kaggle.disk`: free space, checked before downloading;
* :mod:`~audiotag.sources.kaggle.progress`: bytes, rate and time left, logged to
  ``audiotag.kaggle`` at INFO every 5 % or 5 s;
* :mod:`~audiotag.sources.kaggle.download`: the download, its verified-archive
  record and the unpacking (:mod:`audiotag.sources.archive`).

audiotag imports and runs from a local source without a Kaggle account;
credential values are never logged.
"""

from audiotag.sources.kaggle.credentials import (
    RULES_URL,
    TOKEN_URL,
    Credentials,
    find_credentials,
    kaggle_config_dir,
)
from audiotag.sources.kaggle.disk import (
    SKIP_DISK_CHECK_ENV,
    UNPACK_FACTOR,
    DiskSpaceError,
    check_disk_space,
)
from audiotag.sources.kaggle.download import (
    RECORD_SUFFIX,
    download_competition,
    extraction_complete,
)
from audiotag.sources.kaggle.errors import (
    KaggleAccessError,
    KaggleCredentialsError,
    KaggleError,
    KaggleNetworkError,
    KaggleUnreachableError,
)
from audiotag.sources.kaggle.progress import DownloadProgress, format_bytes

__all__ = [
    "RECORD_SUFFIX",
    "RULES_URL",
    "SKIP_DISK_CHECK_ENV",
    "TOKEN_URL",
    "UNPACK_FACTOR",
    "Credentials",
    "DiskSpaceError",
    "DownloadProgress",
    "KaggleAccessError",
    "KaggleCredentialsError",
    "KaggleError",
    "KaggleNetworkError",
    "KaggleUnreachableError",
    "check_disk_space",
    "download_competition",
    "extraction_complete",
    "find_credentials",
    "format_bytes",
    "kaggle_config_dir",
]
