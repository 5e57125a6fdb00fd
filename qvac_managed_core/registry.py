"""The cross-process registry: serve records, consumer markers and start-error files.

Formats match the TypeScript provider's so either side can reuse the other's serves: a record is
2-space JSON (0600, written to a temp file and renamed), a consumer marker is a file named
`<pid>.<8 hex>` (0600). We add the PIDs' start times as extra fields; TypeScript ignores them and
we fall back to PID-only liveness for its records. Anything unparsable is ignored, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import paths
from .liveness import is_alive, start_time


@dataclass
class ServeRecord:
    """A published, healthy serve: where it listens, its key, and who owns it."""

    fleet_key: str
    api_key: str
    serve_pid: int
    runner_pid: int
    port: int
    host: str
    config_path: str
    started_at: str
    idle_timeout_ms: int
    serve_start_time: float | None = None
    runner_start_time: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, `http://host:port/v1`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "fleetKey": self.fleet_key,
            "apiKey": self.api_key,
            "servePid": self.serve_pid,
            "runnerPid": self.runner_pid,
            "port": self.port,
            "host": self.host,
            "baseURL": self.base_url,
            "configPath": self.config_path,
            "startedAt": self.started_at,
            "idleTimeoutMs": self.idle_timeout_ms,
        }
        if self.serve_start_time is not None:
            data["servePidStartTime"] = self.serve_start_time
        if self.runner_start_time is not None:
            data["runnerPidStartTime"] = self.runner_start_time
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: Any) -> ServeRecord | None:
        """Parse a record (ours or TypeScript's); None when any required field is off."""
        if not isinstance(data, dict):
            return None
        try:
            rec = cls(
                fleet_key=_typed(data, "fleetKey", str),
                api_key=_typed(data, "apiKey", str),
                serve_pid=_typed(data, "servePid", int),
                runner_pid=_typed(data, "runnerPid", int),
                port=_typed(data, "port", int),
                host=_typed(data, "host", str),
                config_path=_typed(data, "configPath", str),
                started_at=_typed(data, "startedAt", str),
                idle_timeout_ms=_typed(data, "idleTimeoutMs", int),
                serve_start_time=_optional_float(data.get("servePidStartTime")),
                runner_start_time=_optional_float(data.get("runnerPidStartTime")),
            )
        except (KeyError, TypeError):
            return None
        if not rec.api_key or not _url_matches(data.get("baseURL"), rec.host, rec.port):
            return None
        known = {
            "fleetKey", "apiKey", "servePid", "runnerPid", "port", "host", "baseURL",
            "configPath", "startedAt", "idleTimeoutMs", "servePidStartTime", "runnerPidStartTime",
        }  # fmt: skip
        rec.extra = {k: v for k, v in data.items() if k not in known}
        return rec

    def serve_alive(self) -> bool:
        return is_alive(self.serve_pid, self.serve_start_time)

    def runner_alive(self) -> bool:
        return is_alive(self.runner_pid, self.runner_start_time)


def _typed(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(name)
    return value


def _optional_float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _url_matches(url: Any, host: str, port: int) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        return (parts.hostname or "").lower() == host.strip("[]").lower() and parts.port == port
    except ValueError:
        return False


def now_iso() -> str:
    """The current time as JavaScript's `toISOString()` writes it."""
    stamp = datetime.now(timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (temp file in the same dir, rename)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_record(key: str) -> ServeRecord | None:
    """The record for `key`, or None if absent or unparsable."""
    return read_record_file(paths.record_path(key))


def read_record_file(path: Path) -> ServeRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ServeRecord.from_json(data)


def write_record(record: ServeRecord) -> None:
    write_private(
        paths.record_path(record.fleet_key), json.dumps(record.to_json(), indent=2) + "\n"
    )


def remove_record(key: str, serve_pid: int | None = None) -> bool:
    """Delete the record; with `serve_pid`, only if it still names that serve."""
    path = paths.record_path(key)
    if serve_pid is not None:
        current = read_record_file(path)
        if current is None or current.serve_pid != serve_pid:
            return False
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def list_record_keys() -> list[str]:
    """Keys of every `<key>.json` in the registry."""
    return sorted(p.name[: -len(".json")] for p in paths.registry_dir().glob("*.json"))


# Consumer markers -----------------------------------------------------------------------------


def add_consumer(key: str) -> Path:
    """Create this process's marker `<pid>.<8 hex>` (0600), holding the PID's start time."""
    folder = paths.consumers_dir(key)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.{secrets.token_hex(4)}"
    body = json.dumps({"pid": os.getpid(), "startTime": start_time(os.getpid())})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    return path


def remove_consumer(path: Path) -> None:
    """Remove a marker; best effort (safe at interpreter exit)."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _marker_alive(path: Path) -> bool:
    head = path.name.split(".", 1)[0]
    if not head.isdigit():
        return False
    pid = int(head)
    started: float | None = None
    try:
        text = path.read_text(encoding="utf-8")
        if text.strip():
            data = json.loads(text)
            if isinstance(data, dict) and data.get("pid") == pid:
                started = _optional_float(data.get("startTime"))
    except (OSError, ValueError):
        started = None  # TypeScript markers are empty; a torn one falls back to PID-only
    return is_alive(pid, started)


def live_consumers(key: str, prune: bool = True) -> int:
    """How many markers name a live process; dead ones are removed when `prune`."""
    folder = paths.consumers_dir(key)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    count = 0
    for entry in entries:
        if _marker_alive(entry):
            count += 1
        elif prune and entry.name.split(".", 1)[0].isdigit():
            remove_consumer(entry)
    return count


# Start errors ---------------------------------------------------------------------------------


def write_error(key: str, payload: dict[str, Any]) -> None:
    """Record why a start failed (JSON with `code` and `message`), for the waiting acquirers."""
    write_private(paths.error_path(key), json.dumps({**payload, "at": time.time()}))


def read_error(key: str) -> dict[str, Any] | None:
    """The start error for `key`: our JSON, or a TypeScript runner's plain message."""
    path = paths.error_path(key)
    try:
        text = path.read_text(encoding="utf-8")
        at = path.stat().st_mtime
    except OSError:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            data.setdefault("at", at)
            return data
    except ValueError:
        pass
    return {"code": "SERVE_SPAWN_FAILED", "message": text.strip(), "at": at}


def clear_error(key: str) -> None:
    with contextlib.suppress(OSError):
        paths.error_path(key).unlink()
