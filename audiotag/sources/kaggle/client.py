"""The ``kaggle`` client, imported only when a download needs it, and its login.

``import kaggle`` authenticates at import time, so it happens inside
:func:`_api_class`: audiotag imports and runs from a local source without a
Kaggle account. ``KAGGLE_API_ENVIRONMENT`` (kagglesdk's setting: ``TEST`` is
``localhost:7777``) chooses the server.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

from audiotag.sources.kaggle.credentials import (
    TOKEN_URL,
    Credentials,
    _scrub,
    kaggle_config_dir,
)
from audiotag.sources.kaggle.errors import KaggleCredentialsError

logger = logging.getLogger("audiotag.kaggle")

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
