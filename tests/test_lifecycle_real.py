"""The managed-serve lifecycle against the real `qvac serve` and the real test model."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from qvac_managed_core import ModelLoadError, acquire, registry
from tests.conftest import chat_spec, gone, kill_serve, processes_of, wait_for, wait_reaped
from tests.helpers.procs import Consumer

pytestmark = pytest.mark.real_serve


def consumer_options(model: str, **options: Any) -> dict[str, Any]:
    return {"models": [chat_spec(model).model_dump(exclude_none=True)], **options}


def chat(client: httpx.Client, model: str = "gemma") -> httpx.Response:
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    return client.post("/chat/completions", json=body)


def test_serve_reports_model_ready_on_v1_models(real_serve: str, qvac_home: Path) -> None:
    with acquire([chat_spec(real_serve)], serve_idle_timeout=0.5) as lease:
        authed = httpx.get(
            f"{lease.base_url}/models", headers={"Authorization": f"Bearer {lease.api_key}"}
        )
        anonymous = httpx.get(f"{lease.base_url}/models")
        assert authed.status_code == 200
        states = {m["id"]: m["state"] for m in authed.json()["data"]}
        assert states == {"gemma": "ready"}
        assert anonymous.status_code == 401
        assert lease.reused is False
    wait_reaped(qvac_home)


def test_cold_start_then_reuse_from_second_process(real_serve: str, qvac_home: Path) -> None:
    lease = acquire([chat_spec(real_serve)], serve_idle_timeout=0.5)
    try:
        with Consumer(consumer_options(real_serve, serve_idle_timeout=0.5)) as other:
            assert other.info["pid"] == lease.pid
            assert other.info["reused"] is True
            assert other.info["fleet_key"] == lease.fleet_key
            assert other.send("chat") == {"status": 200, "pid": lease.pid}
    finally:
        lease.close()
    wait_reaped(qvac_home)


def test_same_process_second_lease_shares_handle_and_closes_independently(
    real_serve: str, qvac_home: Path
) -> None:
    first = acquire([chat_spec(real_serve)], serve_idle_timeout=0.5)
    second = acquire([chat_spec(real_serve)], serve_idle_timeout=0.5)
    assert second.pid == first.pid and second.reused is True
    markers = list((qvac_home / "managed-serves" / f"{first.fleet_key}.consumers").iterdir())
    assert len(markers) == 1  # one marker per process, not per lease
    first.close()
    assert first.closed and not second.closed
    with httpx.Client(transport=second.http_transport(), base_url=second.base_url) as client:
        assert chat(client).status_code == 200
    second.close()
    wait_reaped(qvac_home)


def test_close_keeps_serve_another_process_uses(real_serve: str, qvac_home: Path) -> None:
    idle = 0.5
    with Consumer(consumer_options(real_serve, serve_idle_timeout=idle)) as other:
        lease = acquire([chat_spec(real_serve)], serve_idle_timeout=idle)
        serve_pid = lease.pid
        assert lease.reused is True
        lease.close()
        deadline = time.monotonic() + idle + 3.0  # well past the idle timeout
        while time.monotonic() < deadline:
            assert not gone(serve_pid), "serve was reaped while another process used it"
            time.sleep(0.2)
        assert other.send("chat") == {"status": 200, "pid": serve_pid}
    wait_for(lambda: gone(serve_pid), 30, "the serve to be reaped once the consumer died")
    wait_reaped(qvac_home)


@pytest.mark.parametrize("leave", ["close", "exit", "sigkill"])
def test_idle_reap_after_last_consumer_leaves(real_serve: str, qvac_home: Path, leave: str) -> None:
    with Consumer(consumer_options(real_serve, serve_idle_timeout=1.0)) as only:
        serve_pid, runner_pid = only.info["pid"], only.info["runner_pid"]
        workers = [p.pid for p in psutil.Process(serve_pid).children(recursive=True)]
        assert workers, "the real serve runs a bare inference worker"
        if leave == "close":
            only.send("close")
        elif leave == "exit":
            only.send("exit")
        else:
            only.kill()
        wait_for(lambda: gone(serve_pid), 30, "the idle serve to be reaped")
        wait_for(lambda: gone(runner_pid), 10, "the runner to exit after reaping")
        assert all(gone(pid) for pid in workers), "the bare worker outlived its serve"
        assert registry.read_record(only.info["fleet_key"]) is None
    wait_reaped(qvac_home)


def test_established_tcp_connection_keeps_serve_alive(real_serve: str, qvac_home: Path) -> None:
    lease = acquire([chat_spec(real_serve)], serve_idle_timeout=0.5)
    serve_pid, port = lease.pid, lease.port
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        lease.close()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert not gone(serve_pid), "reaped while a client still held a connection"
            time.sleep(0.2)
    finally:
        sock.close()
    wait_for(lambda: gone(serve_pid), 30, "reap after the connection closed")
    wait_reaped(qvac_home)


def test_runner_sigkill_then_next_acquire_sweeps_orphan_and_respawns(
    real_serve: str, qvac_home: Path
) -> None:
    with Consumer(consumer_options(real_serve, serve_idle_timeout=0.5)) as first:
        old_serve, old_runner = first.info["pid"], first.info["runner_pid"]
        old_workers = [p.pid for p in psutil.Process(old_serve).children(recursive=True)]
        os.kill(old_runner, signal.SIGKILL)
        wait_for(lambda: gone(old_runner), 10, "the runner to die")
        assert not gone(old_serve), "the serve must survive its runner (no pipes to it)"
        with acquire([chat_spec(real_serve)], serve_idle_timeout=0.5) as lease:
            assert lease.pid != old_serve
            assert lease.reused is False
            assert gone(old_serve) and all(gone(pid) for pid in old_workers)
            with httpx.Client(transport=lease.http_transport(), base_url=lease.base_url) as c:
                assert chat(c).status_code == 200
    wait_reaped(qvac_home)


def test_serve_sigkill_mid_lease_next_request_respawns(real_serve: str, qvac_home: Path) -> None:
    lease = acquire([chat_spec(real_serve)], serve_idle_timeout=0.5)
    client = httpx.Client(transport=lease.http_transport(), base_url=lease.base_url, timeout=60)
    try:
        assert chat(client).status_code == 200
        old_pid, old_generation = lease.pid, lease.generation
        kill_serve(old_pid)
        response = chat(client)
        assert response.status_code == 200
        assert lease.pid != old_pid
        assert lease.generation == old_generation + 1
    finally:
        client.close()
        lease.close()
    wait_reaped(qvac_home)


async def test_serve_sigkill_async_client_respawns(real_serve: str, qvac_home: Path) -> None:
    lease = acquire([chat_spec(real_serve)], serve_idle_timeout=0.5)
    body = {"model": "gemma", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(
        transport=lease.async_http_transport(), base_url=lease.base_url, timeout=60
    ) as client:
        old_pid = lease.pid
        kill_serve(old_pid)
        response = await client.post("/chat/completions", json=body)
        assert response.status_code == 200
        assert lease.pid != old_pid
    lease.close()
    wait_reaped(qvac_home)


def test_eight_processes_racing_on_cold_registry_start_one_serve(
    real_serve: str, qvac_home: Path
) -> None:
    options = consumer_options(real_serve, serve_idle_timeout=0.5)
    consumers: list[Consumer] = []
    try:
        for _ in range(8):  # start all eight before reading any of them
            consumers.append(Consumer(options, wait=False))
        infos = [c.read(timeout=180) for c in consumers]
        assert len({info["pid"] for info in infos}) == 1, infos
        assert sum(1 for info in infos if not info["reused"]) == 1
        serves = [p for p in processes_of(qvac_home) if "--openai" in p.cmdline()]
        assert len(serves) == 1
    finally:
        for c in consumers:
            c.kill()
    wait_reaped(qvac_home)


def test_private_serve_is_separate_and_reaped_at_once(real_serve: str, qvac_home: Path) -> None:
    shared = acquire([chat_spec(real_serve)], serve_idle_timeout=0.5)
    private = acquire([chat_spec(real_serve)], reuse=False)
    try:
        assert private.pid != shared.pid
        assert private.fleet_key.startswith(shared.fleet_key + "-priv-")
        assert private.idle_timeout == 0.0
        private_pid = private.pid
        private.close()
        wait_for(lambda: gone(private_pid), 15, "the private serve to stop after close")
        assert not gone(shared.pid)
    finally:
        shared.close()
    wait_reaped(qvac_home)


def test_preload_in_error_fails_fast_with_log_tail(
    real_serve: str, qvac_home: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a gguf file" * 64)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        acquire(
            [chat_spec(real_serve), chat_spec(str(broken), name="broken")],
            serve_start_timeout=120,
        )
    assert time.monotonic() - started < 60, "an alias in error must not wait out the timeout"
    assert info.value.aliases == ["broken"]
    assert 'Failed to preload "broken"' in info.value.log_tail
    assert info.value.code == "MODEL_LOAD_ERROR"
    wait_reaped(qvac_home)


def test_api_key_is_in_no_process_argv_or_log(real_serve: str, qvac_home: Path) -> None:
    with acquire([chat_spec(real_serve)], serve_idle_timeout=0.5) as lease:
        key = lease.api_key
        for proc in psutil.process_iter(["cmdline"]):
            assert key not in " ".join(proc.info["cmdline"] or []), proc
        folder = qvac_home / "managed-serves"
        for path in folder.iterdir():
            if path.is_file():
                assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
                if path.suffix != ".json":
                    assert key not in path.read_text(errors="replace"), path
        assert (folder.stat().st_mode & 0o777) == 0o700
    wait_reaped(qvac_home)
