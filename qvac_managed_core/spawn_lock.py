"""The per-key spawn lock: `<key>.lock`, created with O_EXCL, holding the owner's PID.

A lock is stolen only from a dead owner, or from an unreadable one after 30 s; a live owner keeps
it however long it takes (its start has its own deadline).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from . import paths
from .liveness import is_alive

UNKNOWN_OWNER_STALE_AFTER = 30.0


def try_lock(key: str) -> bool:
    """Take the lock if free (or stale); False if a live process holds it."""
    path = paths.lock_path(key)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if not _stale(path) or not _steal(path):
                return False
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def _steal(path: Path) -> bool:
    """Remove a lock judged stale, unless another process re-took it meanwhile.

    The lock is first renamed aside (atomic) and judged again there; a lock that turns out to be
    live is linked back into place (link fails rather than overwrite a newer one).
    """
    aside = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # someone else removed it: contend again
    if _stale(aside):
        aside.unlink(missing_ok=True)
        return True
    with contextlib.suppress(FileExistsError):
        os.link(aside, path)
    aside.unlink(missing_ok=True)
    return False


def release(key: str) -> None:
    """Release the lock if this process holds it."""
    path = paths.lock_path(key)
    if lock_owner(key) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def lock_owner(key: str) -> int | None:
    """The PID written in the lock, or None when absent or unreadable."""
    try:
        text = paths.lock_path(key).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _stale(path: Path) -> bool:
    try:
        text = path.read_text().strip()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if text.isdigit() and int(text) > 0:
        return not is_alive(int(text))
    return age >= UNKNOWN_OWNER_STALE_AFTER
