"""The sweep: drops the dead, keeps what it cannot judge, removes stale files; never fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvac_managed_core import paths, registry
from qvac_managed_core.serve_process import bound_log, log_tail
from qvac_managed_core.sweep import STALE_FILE_AGE, sweep


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that answers no HTTP (an alive-but-unanswering 'serve')."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(10)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def write_record(key: str, serve_pid: int, runner_pid: int, config_path: str = "") -> None:
    record = registry.ServeRecord(
        fleet_key=key, api_key="k", serve_pid=serve_pid, runner_pid=runner_pid, port=9,
        host="127.0.0.1", config_path=config_path, started_at=registry.now_iso(),
        idle_timeout_ms=1000,
    )  # fmt: skip
    registry.write_record(record)


def test_dead_serve_record_and_its_config_dir_are_dropped() -> None:
    config_dir = Path(tempfile.mkdtemp(prefix=paths.CONFIG_DIR_PREFIX))
    (config_dir / "qvac.config.json").write_text("{}")
    write_record("deadbeefdeadbeef", dead_pid(), dead_pid(), str(config_dir / "qvac.config.json"))
    assert sweep() == ["deadbeefdeadbeef"]
    assert registry.read_record("deadbeefdeadbeef") is None
    assert not config_dir.exists()


def test_a_config_dir_not_ours_is_never_removed(tmp_path: Path) -> None:
    users = tmp_path / "my-project"
    users.mkdir()
    (users / "qvac.config.json").write_text("{}")
    write_record("0123456789abcdef", dead_pid(), dead_pid(), str(users / "qvac.config.json"))
    sweep()
    assert (users / "qvac.config.json").exists()


def test_alive_but_unanswering_orphan_is_kept(sleeper: subprocess.Popen[bytes]) -> None:
    write_record("aaaaaaaaaaaaaaaa", sleeper.pid, dead_pid())
    assert sweep() == []
    assert registry.read_record("aaaaaaaaaaaaaaaa") is not None
    assert sleeper.poll() is None, "a serve that does not answer with our key is not ours to kill"


def test_live_owned_serve_is_untouched(sleeper: subprocess.Popen[bytes]) -> None:
    write_record("bbbbbbbbbbbbbbbb", sleeper.pid, os.getpid())
    marker = registry.add_consumer("bbbbbbbbbbbbbbbb")
    assert sweep() == []
    assert marker.exists() and registry.read_record("bbbbbbbbbbbbbbbb") is not None


def test_corrupt_files_are_ignored_and_stale_ones_removed() -> None:
    folder = paths.registry_dir()
    (folder / "cccccccccccccccc.json").write_text("{ not json")
    stale = folder / "k.123.abcd.runner-params.json"
    fresh = folder / "k.124.abcd.runner-params.json"
    tmp = folder / "k.json.1.2.tmp"
    for path in (stale, fresh, tmp):
        path.write_text(json.dumps({"apiKey": "x"}))
    old = time.time() - STALE_FILE_AGE - 5
    os.utime(stale, (old, old))
    os.utime(tmp, (old, old))
    assert sweep() == []
    assert (folder / "cccccccccccccccc.json").exists()
    assert not stale.exists() and not tmp.exists()
    assert fresh.exists()


def test_log_is_kept_bounded_to_its_tail(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    log.write_text("old line\n" * 200_000 + "the last line\n")
    bound_log(log)
    assert log.stat().st_size < 300_000
    assert log_tail(log).endswith("the last line\n")
    assert log.read_text().startswith("[log truncated]")
