"""Finding the ``kaggle`` client's credentials without importing it, and keeping them secret.

Credentials are whatever the client supports (``KAGGLE_API_TOKEN``,
``~/.kaggle/access_token``, ``kaggle.json``, ``KAGGLE_USERNAME`` with
``KAGGLE_KEY``, ``kaggle auth login``); their values are never logged, and are
scrubbed with :func:`_scrub` from any error text that passes through audiotag.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

TOKEN_URL = "https://www.kaggle.com/settings/api"
RULES_URL = "https://www.kaggle.com/c/{competition}/rules"


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
