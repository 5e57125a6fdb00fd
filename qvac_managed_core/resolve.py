"""Finding or starting the serve for one fleet key: reuse, spawn lock, runner start, waiting.

`resolve` is what both a first `acquire` and a later `reresolve` run. It never spawns a second
serve for a key while another process is starting one: the spawn lock makes one process start it
and the others wait for its record (or its error).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths, registry, spawn_lock
from .errors import (
    ERRORS_BY_CODE,
    ModelLoadError,
    PortAllocationFailedError,
    QvacManagedModeError,
    ServeExitedError,
    ServeSpawnFailedError,
    ServeStartTimeoutError,
)
from .health import probe
from .liveness import is_alive
from .models import ModelSpec, serve_config
from .serve_process import log_tail, port_is_free, resolve_serve_bin
from .sweep import sweep

DEADLINE_MARGIN = 10.0  # the acquirer's backstop beyond the runner's own start timeout
WAIT_SLICE = 5.0
POLL = 0.05

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ServePlan:
    """Everything that decides which serve a caller gets."""

    key: str
    specs: tuple[ModelSpec, ...]
    host: str
    pinned_port: int | None
    serve_bin_path: str | None
    start_timeout: float
    idle_timeout: float

    @property
    def preload(self) -> list[str]:
        return [s.alias for s in self.specs if s.preload]


def find_reusable(plan: ServePlan) -> registry.ServeRecord | None:
    """The published serve for this key if its serve and runner live and it is healthy."""
    record = registry.read_record(plan.key)
    if record is None or not record.serve_alive() or not record.runner_alive():
        return None
    health = probe(record.host, record.port, record.api_key, plan.preload)
    return record if health.ready else None


@dataclass(frozen=True)
class Resolution:
    """What `resolve` found: the serve's record, our marker, and whether we started it."""

    record: registry.ServeRecord
    marker: Path
    spawned: bool


def resolve(plan: ServePlan, marker: Path | None, progress: Progress | None = None) -> Resolution:
    """Attach to or start the serve for `plan`, keeping (or adding) this process's marker.

    A marker that went missing is recreated; one created here is removed again on failure.
    """
    sweep()
    if marker is not None and not marker.exists():
        marker = None
    record = find_reusable(plan)
    if record is not None:
        return Resolution(record, marker or registry.add_consumer(plan.key), spawned=False)
    created = marker is None
    marker = marker or registry.add_consumer(plan.key)  # before spawning: the runner must see us
    try:
        record, spawned = _spawn_or_wait(plan, progress)
        return Resolution(record, marker, spawned)
    except BaseException:
        if created:
            registry.remove_consumer(marker)
        raise


def _spawn_or_wait(plan: ServePlan, progress: Progress | None) -> tuple[registry.ServeRecord, bool]:
    began = time.time()
    deadline = time.monotonic() + plan.start_timeout + DEADLINE_MARGIN
    while True:
        if spawn_lock.try_lock(plan.key):
            try:
                record = find_reusable(plan)
                if record is not None:
                    return record, False
                return _spawn(plan, deadline, progress), True
            finally:
                spawn_lock.release(plan.key)
        slice_end = min(deadline, time.monotonic() + WAIT_SLICE)
        while time.monotonic() < slice_end:
            if registry.read_record(plan.key) is not None:
                record = find_reusable(plan)
                if record is not None:
                    return record, False
            _raise_recorded_error(plan.key, since=began)
            owner = spawn_lock.lock_owner(plan.key)
            if owner is None or not is_alive(owner):
                break  # free or abandoned: contend again
            if progress:
                progress(time.time() - began, "waiting for another process starting this serve")
            time.sleep(POLL * 2)
        if time.monotonic() >= deadline:
            raise ServeStartTimeoutError(
                f"No serve for {plan.key} became ready within {plan.start_timeout:g} s while "
                "another process was starting it. Raise serve_start_timeout."
            )


def _spawn(plan: ServePlan, deadline: float, progress: Progress | None) -> registry.ServeRecord:
    serve_bin = resolve_serve_bin(plan.serve_bin_path)
    if plan.pinned_port is not None and not port_is_free(plan.host, plan.pinned_port):
        raise PortAllocationFailedError(
            f"serve_port={plan.pinned_port} is already in use on {plan.host}: pick another port "
            "or leave serve_port unset to get a free one."
        )
    config_dir = Path(tempfile.mkdtemp(prefix=paths.CONFIG_DIR_PREFIX))
    config_path = config_dir / paths.CONFIG_FILENAME
    config_path.write_text(json.dumps(serve_config(plan.specs), indent=2) + "\n")
    params = {
        "fleetKey": plan.key,
        "apiKey": secrets.token_urlsafe(32),
        "configPath": str(config_path),
        "port": plan.pinned_port or 0,
        "host": plan.host,
        "idleTimeoutMs": int(plan.idle_timeout * 1000),
        "startTimeoutMs": int(plan.start_timeout * 1000),
        "serveBinPath": serve_bin,
        "preload": plan.preload,
        "debug": bool(os.environ.get("QVAC_MANAGED_DEBUG")),
    }
    registry.clear_error(plan.key)
    params_path = paths.registry_dir() / (
        f"{plan.key}.{os.getpid()}.{secrets.token_hex(4)}.runner-params.json"
    )
    registry.write_private(params_path, json.dumps(params))
    began = time.time()
    try:
        runner = _start_runner(params_path)
    except OSError as exc:
        shutil.rmtree(config_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            params_path.unlink()
        raise ServeSpawnFailedError(f"Could not start the managed-serve runner: {exc}") from exc
    log_file = paths.log_path(plan.key)
    while True:
        record = registry.read_record(plan.key)
        if record is not None and record.runner_pid == runner.pid:
            return record
        _raise_recorded_error(plan.key, since=began)
        if runner.poll() is not None:
            _raise_recorded_error(plan.key, since=began)
            raise ServeSpawnFailedError(
                f"The managed-serve runner exited with code {runner.returncode} before the "
                "serve was ready. Set QVAC_MANAGED_DEBUG=1 to keep its output."
            )
        if time.monotonic() >= deadline:
            runner.terminate()  # the runner stops its serve and cleans up on SIGTERM
            raise ServeStartTimeoutError(
                f"qvac serve for {plan.key} was not ready in time.\n{log_tail(log_file, 2000)}"
            )
        if progress:
            progress(time.time() - began, _last_line(log_file))
        time.sleep(POLL)


def _start_runner(params_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    debug = bool(os.environ.get("QVAC_MANAGED_DEBUG"))
    out: Any = subprocess.DEVNULL
    if debug:
        out = open(paths.registry_dir() / "runner-debug.log", "ab")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qvac_managed_core.runner", str(params_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            cwd=str(paths.registry_dir()),
            env=env,
        )
    finally:
        if debug:
            out.close()
    # Reap the runner whenever it exits so it never lingers as a zombie of ours.
    threading.Thread(target=proc.wait, name="qvac-runner-reaper", daemon=True).start()
    return proc


def _last_line(log_file: Path) -> str:
    lines = [line for line in log_tail(log_file, 600).splitlines() if line.strip()]
    return lines[-1].strip()[:120] if lines else "starting qvac serve"


def _raise_recorded_error(key: str, since: float) -> None:
    error = registry.read_error(key)
    if error is None or float(error.get("at", 0)) < since - 1.0:
        return
    raise error_from_payload(error)


def error_from_payload(error: dict[str, Any]) -> QvacManagedModeError:
    """Rebuild the typed error a runner recorded."""
    code = str(error.get("code", "SERVE_SPAWN_FAILED"))
    message = str(error.get("message", "qvac serve failed to start"))
    tail = str(error.get("logTail") or "")
    full = f"{message}\n--- qvac serve log (tail) ---\n{tail.rstrip()}" if tail else message
    if code == "SERVE_EXITED":
        return ServeExitedError(
            full, exit_code=error.get("exitCode"), signal=error.get("signal"), log_tail=tail
        )
    if code == "MODEL_LOAD_ERROR":
        return ModelLoadError(full, aliases=list(error.get("aliases") or []), log_tail=tail)
    cls = ERRORS_BY_CODE.get(code, ServeSpawnFailedError)
    if cls in (ServeExitedError, ModelLoadError) or not issubclass(cls, QvacManagedModeError):
        cls = ServeSpawnFailedError
    return cls(full)
