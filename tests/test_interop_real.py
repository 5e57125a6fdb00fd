"""Interop with serves the TypeScript `@qvac/ai-sdk-provider` starts: its record format (no
start-time fields, ISO `startedAt`, empty consumer markers) against a real `qvac serve`."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from qvac_managed_core import acquire, registry
from qvac_managed_core.lease import build_plan
from qvac_managed_core.models import serve_config
from qvac_managed_core.serve_process import allocate_port, serve_argv, stop_tree
from tests.conftest import chat_spec, gone, wait_for, wait_reaped

pytestmark = pytest.mark.real_serve


@pytest.fixture
def ts_style_serve(real_serve: str, qvac_home: Path, serve_bin: str) -> Iterator[dict[str, object]]:
    """A real serve published the way the TypeScript provider publishes one, with a stand-in
    runner process (a sleeping child) whose pid the record names."""
    plan = build_plan([chat_spec(real_serve)])
    work = Path(tempfile.mkdtemp(prefix="qvac-managed-"))
    config = work / "qvac.config.json"
    config.write_text(json.dumps(serve_config(plan.specs), indent=2) + "\n")
    key = secrets.token_hex(16)
    key_file = work / "serve-api-key"
    key_file.write_text(key)
    key_file.chmod(0o600)
    port = allocate_port("127.0.0.1")
    serve = subprocess.Popen(
        serve_argv(serve_bin, str(config), port, "127.0.0.1", str(key_file)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    record = {
        "fleetKey": plan.key,
        "apiKey": key,
        "servePid": serve.pid,
        "runnerPid": runner.pid,
        "port": port,
        "host": "127.0.0.1",
        "baseURL": f"http://127.0.0.1:{port}/v1",
        "configPath": str(config),
        "startedAt": datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z",
        "idleTimeoutMs": 300000,
    }
    folder = qvac_home / "managed-serves"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    from qvac_managed_core.health import probe

    wait_for(lambda: probe("127.0.0.1", port, key, ["gemma"]).ready, 60, "the serve to be ready")
    (folder / f"{plan.key}.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / f"{plan.key}.consumers").mkdir(mode=0o700)
    (folder / f"{plan.key}.consumers" / f"{runner.pid}.{secrets.token_hex(4)}").touch()
    try:
        yield {"record": record, "serve": serve, "runner": runner, "model": real_serve}
    finally:
        runner.kill()
        runner.wait(10)
        if serve.poll() is None:
            stop_tree(serve.pid)
        serve.wait(10)


def test_attaches_to_a_typescript_published_serve(ts_style_serve: dict[str, object]) -> None:
    record = ts_style_serve["record"]
    assert isinstance(record, dict)
    parsed = registry.read_record(str(record["fleetKey"]))
    assert parsed is not None and parsed.serve_start_time is None  # PID-only liveness
    with acquire([chat_spec(str(ts_style_serve["model"]))]) as lease:
        assert lease.reused is True
        assert lease.pid == record["servePid"]
        assert lease.api_key == record["apiKey"]
        markers = list(registry.paths.consumers_dir(lease.fleet_key).iterdir())
        assert len(markers) == 2, markers  # the TypeScript side's empty marker and ours
        assert registry.live_consumers(lease.fleet_key) == 2


def test_orphaned_typescript_serve_is_swept_then_respawned(
    ts_style_serve: dict[str, object], qvac_home: Path
) -> None:
    record = ts_style_serve["record"]
    runner = ts_style_serve["runner"]
    assert isinstance(record, dict) and isinstance(runner, subprocess.Popen)
    runner.kill()
    runner.wait(10)
    old_serve = int(record["servePid"])
    config_dir = Path(str(record["configPath"])).parent
    with acquire([chat_spec(str(ts_style_serve["model"]))], serve_idle_timeout=0.5) as lease:
        ours = lease.pid
        assert ours != old_serve and lease.reused is False
        assert gone(old_serve), "the orphan (runner dead, answering with its key) was stopped"
        assert not config_dir.exists(), "the orphan's config dir was removed"
    wait_for(lambda: gone(ours), 30, "our own serve to be reaped")
    wait_reaped(qvac_home)
