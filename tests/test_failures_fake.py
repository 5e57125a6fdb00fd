"""Failure paths the real serve cannot be made to show, staged with the fake serve."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from qvac_managed_core import (
    CliNotFoundError,
    LeaseClosedError,
    ManagedModel,
    ModelLoadError,
    ServeExitedError,
    ServeStartTimeoutError,
    acquire,
    registry,
)
from qvac_managed_core.transport import ServeTransport
from tests.conftest import gone, processes_of, wait_for

MODELS = [ManagedModel(name="QWEN3_600M_INST_Q4")]


def test_fake_serve_answers_through_transport(fake_serve: Callable[..., None], qvac_home: Path):
    fake_serve()
    body = {"model": "QWEN3_600M_INST_Q4", "messages": [{"role": "user", "content": "x"}]}
    with acquire(MODELS, serve_idle_timeout=0.2) as lease:
        client = httpx.Client(transport=lease.http_transport(), base_url=lease.base_url)
        assert client.post("/chat/completions", json=body).status_code == 200
        client.close()
    wait_for(lambda: not processes_of(qvac_home), 15, "reap")


def test_serve_exiting_at_once_raises_serve_exited_with_log_tail(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve("exit-now")
    with pytest.raises(ServeExitedError) as info:
        acquire(MODELS)
    assert info.value.exit_code == 3
    assert "fatal: fake failure" in info.value.log_tail
    assert "fatal: fake failure" in str(info.value)
    wait_for(lambda: not processes_of(qvac_home), 10, "the runner to exit")
    assert registry.list_record_keys() == []


def test_serve_never_listening_times_out_and_is_killed(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve("never-listen")
    with pytest.raises(ServeStartTimeoutError) as info:
        acquire(MODELS, serve_start_timeout=1.5)
    assert info.value.code == "SERVE_START_TIMEOUT"
    assert "serve_start_timeout" in str(info.value)
    wait_for(lambda: not processes_of(qvac_home), 15, "the fake serve to be stopped")


def test_model_in_error_fails_fast(fake_serve: Callable[..., None], qvac_home: Path) -> None:
    fake_serve("model-error")
    with pytest.raises(ModelLoadError) as info:
        acquire(MODELS, serve_start_timeout=60)
    assert info.value.aliases == ["QWEN3_600M_INST_Q4"]
    assert "fake load failure" in info.value.log_tail
    wait_for(lambda: not processes_of(qvac_home), 15, "cleanup after the failed start")


def test_stop_kills_sigterm_ignoring_serve_and_stubborn_grandchild(
    fake_serve: Callable[..., None], qvac_home: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    fake_serve(
        "ignore-sigterm",
        "grandchild",
        FAKE_QVAC_CHILD_PIDFILE=str(pidfile),
        FAKE_QVAC_CHILD_STDIO="devnull",
    )
    lease = acquire(MODELS, serve_idle_timeout=0.2)
    serve_pid = lease.pid
    wait_for(pidfile.exists, 10, "the grandchild's pid file")
    child = int(pidfile.read_text())
    assert not gone(child)
    lease.close()
    wait_for(lambda: gone(serve_pid) and gone(child), 20, "serve and grandchild killed")
    wait_for(lambda: not processes_of(qvac_home), 10, "the runner to exit")


def test_corrupt_record_and_stale_lock_are_survived(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve()
    from qvac_managed_core.lease import build_plan

    key = build_plan(MODELS).key
    folder = qvac_home / "managed-serves"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / f"{key}.json").write_text("{ not json")
    dead = psutil.Popen(["true"])
    dead.wait()
    (folder / f"{key}.lock").write_text(str(dead.pid))
    with acquire(MODELS, serve_idle_timeout=0.2) as lease:
        assert registry.read_record(key) is not None
        assert lease.fleet_key == key
    wait_for(lambda: not processes_of(qvac_home), 15, "reap")
    assert not (folder / f"{key}.lock").exists()


def test_missing_cli_is_a_typed_error_before_anything_spawns(
    qvac_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QVAC_SERVE_BIN", str(tmp_path / "no-such-qvac"))
    with pytest.raises(CliNotFoundError) as info:
        acquire(MODELS)
    assert "npm i -g @qvac/cli" in str(info.value)
    assert not processes_of(qvac_home)
    assert not list((qvac_home / "managed-serves").glob("*.runner-params.json"))
    consumers = qvac_home / "managed-serves"
    assert not any(p.is_file() for p in consumers.rglob("*") if ".consumers" in str(p))


def test_request_after_close_is_a_clear_error(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve()
    lease = acquire(MODELS, serve_idle_timeout=0.2)
    client = httpx.Client(transport=lease.http_transport(), base_url=lease.base_url)
    lease.close()
    with pytest.raises(LeaseClosedError):
        client.get("/models")
    client.close()
    wait_for(lambda: not processes_of(qvac_home), 15, "reap")


def test_runner_params_never_hold_the_key_after_start(
    fake_serve: Callable[..., None], qvac_home: Path, tmp_path: Path
) -> None:
    argv_file = tmp_path / "argv.jsonl"
    fake_serve(FAKE_QVAC_ARGV_FILE=str(argv_file))
    with acquire(MODELS, serve_idle_timeout=0.2) as lease:
        argv = json.loads(argv_file.read_text().splitlines()[0])
        assert argv[1:4] == ["serve", "--openai", "--no-default"]
        assert "--api-key-file" in argv and lease.api_key not in " ".join(argv)
        assert not list((qvac_home / "managed-serves").glob("*.runner-params.json"))
    wait_for(lambda: not processes_of(qvac_home), 15, "reap")


# The transport's retry rule, with a stand-in lease -------------------------------------------


class StubLease:
    """Just what the transport reads of a lease, with a counter for re-resolves."""

    def __init__(self, port: int) -> None:
        self.host, self.port, self.api_key = "127.0.0.1", port, "k"
        self.closed, self.generation, self.fleet_key = False, 0, "stub"
        self.reresolved = 0
        self.next_port = port

    def reresolve(self, generation: int) -> None:
        self.reresolved += 1
        self.port = self.next_port
        self.generation += 1


@pytest.fixture
def resetting_server() -> Iterator[int]:
    """A loopback listener that accepts and closes at once (a reset/read error, not refused)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def loop() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_transport_does_not_retry_a_read_error(resetting_server: int) -> None:
    lease = StubLease(resetting_server)
    client = httpx.Client(transport=ServeTransport(lease))  # type: ignore[arg-type]
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.get(f"http://127.0.0.1:{resetting_server}/v1/models")
    assert lease.reresolved == 0


def test_transport_retries_a_refused_connect_once() -> None:
    lease = StubLease(closed_port())
    lease.next_port = closed_port()  # still refused after re-resolving: one retry, no loop
    client = httpx.Client(transport=ServeTransport(lease))  # type: ignore[arg-type]
    with pytest.raises(httpx.ConnectError):
        client.get("http://127.0.0.1:1/v1/models")
    assert lease.reresolved == 1


async def test_aacquire_works_inside_a_running_loop(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve()
    from qvac_managed_core import aacquire

    async with await aacquire(MODELS, serve_idle_timeout=0.2) as lease:
        assert lease.base_url.startswith("http://127.0.0.1:")
        sync = acquire(MODELS, serve_idle_timeout=0.2)  # the blocking twin, loop running
        assert sync.pid == lease.pid
        sync.close()
    wait_for(lambda: not processes_of(qvac_home), 15, "reap")


def test_deleting_the_record_stops_the_serve(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve()
    lease = acquire(MODELS, serve_idle_timeout=600)
    serve_pid, key = lease.pid, lease.fleet_key
    (qvac_home / "managed-serves" / f"{key}.json").unlink()
    wait_for(lambda: gone(serve_pid), 15, "the runner to stop its serve")
    wait_for(lambda: not processes_of(qvac_home), 10, "the runner to exit")
    lease.close()


def test_close_on_parent_exit_releases_the_lease(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve()
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    consumer = (
        "import time\n"
        "from qvac_managed_core import acquire\n"
        "lease = acquire(['QWEN3_600M_INST_Q4'], serve_idle_timeout=0.2,"
        " close_on_parent_exit=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, consumer], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    folder = qvac_home / "managed-serves"
    try:
        wait_for(lambda: any(folder.glob(f"*.consumers/{child}.*")), 60, "the child's marker")
        parent.kill()
        parent.wait(10)
        wait_for(lambda: not any(folder.glob(f"*.consumers/{child}.*")), 15, "marker removal")
        assert not gone(child), "only the lease is released; the process lives on"
        wait_for(lambda: not any(p.pid != child for p in processes_of(qvac_home)), 15, "reap")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        wait_for(lambda: gone(child), 10, "the child to die")


def test_pinned_port_in_use_is_a_typed_error_before_spawning(
    fake_serve: Callable[..., None], qvac_home: Path
) -> None:
    fake_serve()
    from qvac_managed_core import PortAllocationFailedError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(PortAllocationFailedError) as info:
            acquire(MODELS, serve_port=port)
    assert str(port) in str(info.value) and "serve_port" in str(info.value)
    assert not processes_of(qvac_home)
