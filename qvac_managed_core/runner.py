"""The detached runner: owns one `qvac serve`, publishes it once healthy, reaps it when idle.

    python -m qvac_managed_core.runner <params-file>

The acquirer starts it in a new session. Its parameters (api key included) come in a 0600 file
that it deletes on read, so no secret is ever in an argv. It imports only what it needs, to start
fast. The serve is in use while any consumer marker names a live process or any process holds an
established TCP connection to its port; once neither has held for the idle timeout, or the record
is deleted, or the runner is told to stop, it stops the serve's whole tree and cleans up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import paths, registry
from .health import probe
from .liveness import start_time
from .serve_process import (
    allocate_port,
    bound_log,
    established_connections,
    log_tail,
    remove_worker_sockets,
    serve_argv,
    start_serve,
    stop_tree,
)

POLL_INTERVAL = 0.05  # while starting: a probe of a closed port costs well under 1 ms
MONITOR_INTERVAL = 0.5  # while serving
PORT_RETRIES = 3


class _Stop(Exception):
    """Raised from the signal handler to unwind into cleanup."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise _Stop(signum)


def read_params(path: str) -> dict[str, Any]:
    """Read and delete the one-shot params file."""
    try:
        with open(path, encoding="utf-8") as fh:
            return dict(json.load(fh))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


class Runner:
    """One serve's life: start, health-gate, publish, monitor, stop, clean up."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.key: str = params["fleetKey"]
        self.api_key: str = params["apiKey"]
        self.config_path: str = params["configPath"]
        self.host: str = params["host"]
        self.pinned_port: int | None = params.get("port") or None
        self.idle_timeout = float(params["idleTimeoutMs"]) / 1000.0
        self.start_timeout = float(params["startTimeoutMs"]) / 1000.0
        self.serve_bin: str = params["serveBinPath"]
        self.preload: list[str] = list(params.get("preload", []))
        self.debug = bool(params.get("debug"))
        self.log_file = paths.log_path(self.key)
        self.key_file = str(Path(self.config_path).parent / paths.API_KEY_FILENAME)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    # -- start ------------------------------------------------------------------------------

    def write_key_file(self) -> None:
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self.api_key)

    def start(self) -> registry.ServeRecord:
        """Start the serve and wait until every preloaded alias is ready; raise on failure."""
        deadline = time.monotonic() + self.start_timeout
        self.write_key_file()
        for _attempt in range(PORT_RETRIES):
            self.port = self.pinned_port or allocate_port(self.host)
            argv = serve_argv(self.serve_bin, self.config_path, self.port, self.host, self.key_file)
            self.proc = start_serve(argv, self.log_file)
            outcome = self.wait_healthy(deadline)
            if outcome == "ready":
                return self.publish()
            # "port-taken": another process took the free port between bind and listen
        raise _StartError(
            "PORT_ALLOCATION_FAILED",
            f"qvac serve found its port taken {PORT_RETRIES} times in a row on {self.host}.",
            logTail=log_tail(self.log_file),
        )

    def wait_healthy(self, deadline: float) -> str:
        assert self.proc is not None
        while True:
            code = self.proc.poll()
            if code is not None:
                tail = log_tail(self.log_file)
                if "EADDRINUSE" in tail and not self.pinned_port:
                    return "port-taken"
                self.fail_exited(code, tail)
            health = probe(self.host, self.port, self.api_key, self.preload, timeout=2.0)
            if health.ready:
                return "ready"
            if health.status == "error":
                failed = health.failed_aliases()
                raise _StartError(
                    "MODEL_LOAD_ERROR",
                    f"qvac serve could not load {', '.join(failed)} (state: error).",
                    aliases=failed,
                    logTail=log_tail(self.log_file),
                )
            if time.monotonic() >= deadline:
                raise _StartError(
                    "SERVE_START_TIMEOUT",
                    f"qvac serve was not ready within {self.start_timeout:g} s "
                    f"(last probe: {health.status} {health.detail}). Raise serve_start_timeout "
                    "if the model is still downloading or loading.",
                    logTail=log_tail(self.log_file),
                )
            time.sleep(POLL_INTERVAL)

    def fail_exited(self, code: int, tail: str) -> None:
        sig = -code if code < 0 else None
        how = f"signal {sig}" if sig else f"exit code {code}"
        raise _StartError(
            "SERVE_EXITED",
            f"qvac serve exited while starting ({how}).",
            exitCode=None if sig else code,
            signal=sig,
            logTail=tail,
        )

    def publish(self) -> registry.ServeRecord:
        assert self.proc is not None
        me = os.getpid()
        record = registry.ServeRecord(
            fleet_key=self.key,
            api_key=self.api_key,
            serve_pid=self.proc.pid,
            runner_pid=me,
            port=self.port,
            host=self.host,
            config_path=self.config_path,
            started_at=registry.now_iso(),
            idle_timeout_ms=int(self.idle_timeout * 1000),
            serve_start_time=start_time(self.proc.pid),
            runner_start_time=start_time(me),
        )
        registry.write_record(record)
        registry.clear_error(self.key)
        return record

    # -- serve ------------------------------------------------------------------------------

    def monitor(self, record: registry.ServeRecord) -> str:
        """Block until the serve should stop; returns why."""
        assert self.proc is not None
        idle_since: float | None = None
        while True:
            time.sleep(MONITOR_INTERVAL)
            if self.proc.poll() is not None:
                return "serve exited"
            if not paths.record_path(self.key).exists():
                return "record deleted"
            current = registry.read_record(self.key)
            if current is not None and current.serve_pid != record.serve_pid:
                return "record replaced"
            bound_log(self.log_file)
            in_use = registry.live_consumers(self.key) > 0 or established_connections(self.port)
            now = time.monotonic()
            if in_use:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            if idle_since is not None and now - idle_since >= self.idle_timeout:
                return "idle"

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                stop_tree(self.proc.pid)
            else:
                stop_tree(self.proc.pid, grace=0.5)  # stragglers left in its group
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1.0)
            remove_worker_sockets(self.proc.pid)

    def cleanup(self) -> None:
        if self.proc is not None:
            registry.remove_record(self.key, serve_pid=self.proc.pid)
        config_dir = Path(self.config_path).parent
        if config_dir.name.startswith(paths.CONFIG_DIR_PREFIX):
            shutil.rmtree(config_dir, ignore_errors=True)
        if not self.debug:
            with contextlib.suppress(OSError):
                self.log_file.unlink()
        with contextlib.suppress(OSError):
            paths.consumers_dir(self.key).rmdir()  # only when empty


class _StartError(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.payload = {"code": code, "message": message, **extra}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m qvac_managed_core.runner <params-file>", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    params = read_params(argv[1])
    runner = Runner(params)
    code = 0
    try:
        record = runner.start()
        runner.monitor(record)
    except _StartError as exc:
        registry.write_error(runner.key, exc.payload)
        code = 1
    except _Stop as exc:
        code = 128 + int(exc.args[0])
    except BaseException as exc:  # anything else: report it, never leave the serve behind
        code_name = getattr(exc, "code", None)
        registry.write_error(
            runner.key,
            {
                "code": code_name if isinstance(code_name, str) else "SERVE_SPAWN_FAILED",
                "message": str(exc) if isinstance(code_name, str) else f"runner failed: {exc!r}",
            },
        )
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        runner.stop()
        runner.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
