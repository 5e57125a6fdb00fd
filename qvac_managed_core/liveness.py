"""Process liveness that survives PID reuse: a PID plus the process's start time."""

from __future__ import annotations

import psutil

START_TIME_TOLERANCE = 1.0  # seconds of clock skew between recorder and reader


def start_time(pid: int) -> float | None:
    """The start time (epoch seconds) of `pid`, or None if it is gone or cannot be read."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError, ValueError):
        return None


def is_alive(pid: int | None, started: float | None = None) -> bool:
    """True if `pid` runs and is the same process that started at `started` (if known).

    A zombie is dead; a PID whose start time differs by more than a second was reused by another
    process and is dead too. An unknown start time (not recorded, or not readable) counts as alive.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started is None:
            return True
        actual = proc.create_time()
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, OSError):
        return True
    return abs(actual - started) <= START_TIME_TOLERANCE
