"""Where managed mode keeps its files: `$QVAC_HOME/managed-serves/` (default `~/.qvac`)."""

from __future__ import annotations

import os
from pathlib import Path

REGISTRY_DIRNAME = "managed-serves"
CONFIG_DIR_PREFIX = "qvac-managed-"  # temp dirs holding one serve's config and key file
API_KEY_FILENAME = "serve-api-key"
CONFIG_FILENAME = "qvac.config.json"


def qvac_home() -> Path:
    """`$QVAC_HOME`, else `~/.qvac`."""
    env = os.environ.get("QVAC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".qvac"


def registry_dir(create: bool = True) -> Path:
    """The registry folder, created 0700 (and its mode re-tightened) when `create`."""
    path = qvac_home() / REGISTRY_DIRNAME
    if create:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    return path


def record_path(key: str) -> Path:
    return registry_dir() / f"{key}.json"


def consumers_dir(key: str) -> Path:
    return registry_dir() / f"{key}.consumers"


def lock_path(key: str) -> Path:
    return registry_dir() / f"{key}.lock"


def error_path(key: str) -> Path:
    return registry_dir() / f"{key}.error"


def log_path(key: str) -> Path:
    return registry_dir() / f"{key}.log"
