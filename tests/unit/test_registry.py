"""The cross-process registry: serve records, consumer markers and start-error files."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from qvac_managed_core import paths, registry
from qvac_managed_core.liveness import START_TIME_TOLERANCE, start_time
from qvac_managed_core.registry import ServeRecord

KEY = "0123456789abcdef"
TS_FIELDS = [
    "fleetKey",
    "apiKey",
    "servePid",
    "runnerPid",
    "port",
    "host",
    "baseURL",
    "configPath",
    "startedAt",
    "idleTimeoutMs",
]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _record(**overrides: Any) -> ServeRecord:
    fields: dict[str, Any] = {
        "fleet_key": KEY,
        "api_key": "secret-key",
        "serve_pid": os.getpid(),
        "runner_pid": os.getpid(),
        "port": 18080,
        "host": "127.0.0.1",
        "config_path": "/tmp/qvac-managed-x/qvac.config.json",
        "started_at": registry.now_iso(),
        "idle_timeout_ms": 300_000,
        "serve_start_time": start_time(os.getpid()),
        "runner_start_time": start_time(os.getpid()),
    }
    fields.update(overrides)
    return ServeRecord(**fields)


def _ts_record(**overrides: Any) -> dict[str, Any]:
    """A record as the TypeScript provider writes it: no start times, ISO startedAt."""
    data: dict[str, Any] = {
        "fleetKey": KEY,
        "apiKey": "ts-secret",
        "servePid": os.getpid(),
        "runnerPid": os.getpid(),
        "port": 18081,
        "host": "127.0.0.1",
        "baseURL": "http://127.0.0.1:18081/v1",
        "configPath": "/tmp/qvac-managed-ts/qvac.config.json",
        "startedAt": "2025-01-02T03:04:05.678Z",
        "idleTimeoutMs": 600000,
    }
    data.update(overrides)
    return data


def _write_raw(key: str, text: str) -> Path:
    path = paths.record_path(key)
    path.write_text(text, encoding="utf-8")
    return path


# Paths ----------------------------------------------------------------------------------------


def test_registry_lives_under_qvac_home(isolated_qvac_home: Path) -> None:
    assert paths.registry_dir() == isolated_qvac_home / "managed-serves"
    assert paths.record_path(KEY) == isolated_qvac_home / "managed-serves" / f"{KEY}.json"


def test_registry_dir_is_created_0700(isolated_qvac_home: Path) -> None:
    folder = paths.registry_dir()
    assert folder.is_dir()
    assert _mode(folder) == 0o700


def test_registry_dir_mode_is_retightened(isolated_qvac_home: Path) -> None:
    folder = isolated_qvac_home / "managed-serves"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    paths.registry_dir()
    assert _mode(folder) == 0o700


def test_registry_dir_without_create_does_not_create(isolated_qvac_home: Path) -> None:
    folder = paths.registry_dir(create=False)
    assert not folder.exists()


# Records --------------------------------------------------------------------------------------


def test_record_roundtrip() -> None:
    record = _record()
    registry.write_record(record)
    assert registry.read_record(KEY) == record


def test_record_file_is_0600_and_no_temp_file_is_left() -> None:
    registry.write_record(_record())
    path = paths.record_path(KEY)
    assert _mode(path) == 0o600
    assert [p.name for p in paths.registry_dir().iterdir()] == [path.name]


def test_record_is_two_space_json_with_the_typescript_field_names() -> None:
    record = _record()
    registry.write_record(record)
    text = paths.record_path(KEY).read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2) + "\n"
    assert text.splitlines()[1].startswith('  "')
    assert list(data)[: len(TS_FIELDS)] == TS_FIELDS
    assert data["fleetKey"] == record.fleet_key
    assert data["apiKey"] == record.api_key
    assert data["servePid"] == record.serve_pid
    assert data["runnerPid"] == record.runner_pid
    assert data["port"] == record.port
    assert data["host"] == record.host
    assert data["baseURL"] == f"http://{record.host}:{record.port}/v1"
    assert data["configPath"] == record.config_path
    assert data["startedAt"] == record.started_at
    assert data["idleTimeoutMs"] == record.idle_timeout_ms
    assert data["servePidStartTime"] == record.serve_start_time


def test_record_without_start_times_omits_them() -> None:
    registry.write_record(_record(serve_start_time=None, runner_start_time=None))
    data = json.loads(paths.record_path(KEY).read_text(encoding="utf-8"))
    assert list(data) == TS_FIELDS


def test_ipv6_record_has_a_bracketed_base_url_and_roundtrips() -> None:
    record = _record(host="::1")
    assert record.base_url == f"http://[::1]:{record.port}/v1"
    registry.write_record(record)
    assert registry.read_record(KEY) == record


def test_unknown_fields_are_kept_through_a_roundtrip() -> None:
    _write_raw(KEY, json.dumps(_ts_record(provider="ts-0.7.0")))
    record = registry.read_record(KEY)
    assert record is not None
    assert record.extra == {"provider": "ts-0.7.0"}
    registry.write_record(record)
    data = json.loads(paths.record_path(KEY).read_text(encoding="utf-8"))
    assert data["provider"] == "ts-0.7.0"


def test_now_iso_is_javascript_to_iso_string() -> None:
    stamp = registry.now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 5


def test_typescript_record_parses() -> None:
    data = _ts_record()
    _write_raw(KEY, json.dumps(data, indent=2))
    record = registry.read_record(KEY)
    assert record is not None
    assert record.fleet_key == data["fleetKey"]
    assert record.api_key == data["apiKey"]
    assert record.serve_pid == data["servePid"]
    assert record.port == data["port"]
    assert record.started_at == data["startedAt"]
    assert record.idle_timeout_ms == data["idleTimeoutMs"]
    assert record.base_url == data["baseURL"]
    assert record.serve_start_time is None and record.runner_start_time is None
    assert record.serve_alive()  # PID-only liveness for TypeScript records
    assert record.runner_alive()


def test_record_with_a_wrong_start_time_is_not_alive() -> None:
    own = start_time(os.getpid())
    assert own is not None
    record = _record(serve_start_time=own + 10 * START_TIME_TOLERANCE)
    assert not record.serve_alive()
    assert record.runner_alive()


def test_record_of_a_dead_serve_is_not_alive(dead_pid: int) -> None:
    record = _record(serve_pid=dead_pid, serve_start_time=None)
    assert not record.serve_alive()


@pytest.mark.parametrize(
    "overrides",
    [
        {"baseURL": "http://127.0.0.1:9999/v1"},  # port disagrees
        {"baseURL": "http://10.0.0.1:18081/v1"},  # host disagrees
        {"baseURL": "not a url"},
        {"baseURL": None},
        {"apiKey": ""},
        {"servePid": "123"},
        {"port": True},
        {"startedAt": 1735787045678},
    ],
)
def test_record_with_inconsistent_fields_is_ignored(overrides: dict[str, Any]) -> None:
    _write_raw(KEY, json.dumps(_ts_record(**overrides)))
    assert registry.read_record(KEY) is None


@pytest.mark.parametrize("missing", TS_FIELDS)
def test_record_missing_a_field_is_ignored(missing: str) -> None:
    data = _ts_record()
    del data[missing]
    _write_raw(KEY, json.dumps(data))
    assert registry.read_record(KEY) is None


def test_record_missing_api_key_is_ignored() -> None:
    data = _ts_record()
    del data["apiKey"]
    _write_raw(KEY, json.dumps(data))
    assert registry.read_record(KEY) is None


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "null", '"x"', "\ufffe\x00"])
def test_corrupt_record_is_ignored(text: str) -> None:
    _write_raw(KEY, text)
    assert registry.read_record(KEY) is None


def test_record_that_is_not_utf8_is_ignored() -> None:
    paths.record_path(KEY).write_bytes(b"\xff\xfe{\x80}")
    assert registry.read_record(KEY) is None


def test_absent_record_is_none() -> None:
    assert registry.read_record(KEY) is None


def test_remove_record_with_serve_pid_only_removes_a_match() -> None:
    record = _record()
    registry.write_record(record)
    assert registry.remove_record(KEY, serve_pid=record.serve_pid + 1) is False
    assert registry.read_record(KEY) == record
    assert registry.remove_record(KEY, serve_pid=record.serve_pid) is True
    assert not paths.record_path(KEY).exists()
    assert registry.remove_record(KEY, serve_pid=record.serve_pid) is False


def test_remove_record_with_serve_pid_keeps_an_unparsable_file() -> None:
    path = _write_raw(KEY, "{torn")
    assert registry.remove_record(KEY, serve_pid=os.getpid()) is False
    assert path.exists()


def test_remove_record_without_serve_pid_removes_any_record() -> None:
    registry.write_record(_record())
    assert registry.remove_record(KEY) is True
    assert not paths.record_path(KEY).exists()
    assert registry.remove_record(KEY) is False


def test_list_record_keys() -> None:
    registry.write_record(_record(fleet_key="bbbb"))
    registry.write_record(_record(fleet_key="aaaa"))
    registry.add_consumer("cccc")
    assert registry.list_record_keys() == ["aaaa", "bbbb"]


# Consumer markers -----------------------------------------------------------------------------


def test_consumer_marker_name_mode_and_body() -> None:
    marker = registry.add_consumer(KEY)
    assert marker.parent == paths.consumers_dir(KEY)
    assert re.fullmatch(rf"{os.getpid()}\.[0-9a-f]{{8}}", marker.name)
    assert _mode(marker) == 0o600
    assert _mode(marker.parent) == 0o700
    body = json.loads(marker.read_text(encoding="utf-8"))
    assert body == {"pid": os.getpid(), "startTime": start_time(os.getpid())}


def test_each_consumer_marker_is_new() -> None:
    first = registry.add_consumer(KEY)
    second = registry.add_consumer(KEY)
    assert first != second
    assert registry.live_consumers(KEY) == 2


def test_live_consumers_counts_and_remove_consumer_uncounts() -> None:
    assert registry.live_consumers(KEY) == 0
    marker = registry.add_consumer(KEY)
    assert registry.live_consumers(KEY) == 1
    registry.remove_consumer(marker)
    assert registry.live_consumers(KEY) == 0
    registry.remove_consumer(marker)  # removing twice is harmless


def test_marker_of_a_dead_pid_is_pruned(dead_pid: int) -> None:
    folder = paths.consumers_dir(KEY)
    folder.mkdir(parents=True)
    dead = folder / f"{dead_pid}.deadbeef"
    dead.write_text("")
    live = registry.add_consumer(KEY)
    assert registry.live_consumers(KEY) == 1
    assert not dead.exists()
    assert live.exists()


def test_marker_of_a_dead_pid_is_kept_without_prune(dead_pid: int) -> None:
    folder = paths.consumers_dir(KEY)
    folder.mkdir(parents=True)
    dead = folder / f"{dead_pid}.deadbeef"
    dead.write_text("")
    assert registry.live_consumers(KEY, prune=False) == 0
    assert dead.exists()


def test_empty_typescript_marker_of_a_live_pid_counts() -> None:
    folder = paths.consumers_dir(KEY)
    folder.mkdir(parents=True)
    marker = folder / f"{os.getpid()}.0a1b2c3d"
    marker.write_text("")
    assert registry.live_consumers(KEY) == 1
    assert marker.exists()


def test_marker_with_a_reused_pid_counts_as_dead() -> None:
    own = start_time(os.getpid())
    assert own is not None
    folder = paths.consumers_dir(KEY)
    folder.mkdir(parents=True)
    marker = folder / f"{os.getpid()}.0a1b2c3d"
    marker.write_text(json.dumps({"pid": os.getpid(), "startTime": own - 2 * START_TIME_TOLERANCE}))
    assert registry.live_consumers(KEY) == 0
    assert not marker.exists()


def test_marker_within_the_start_time_tolerance_counts() -> None:
    own = start_time(os.getpid())
    assert own is not None
    folder = paths.consumers_dir(KEY)
    folder.mkdir(parents=True)
    marker = folder / f"{os.getpid()}.0a1b2c3d"
    marker.write_text(json.dumps({"pid": os.getpid(), "startTime": own + START_TIME_TOLERANCE / 2}))
    assert registry.live_consumers(KEY) == 1


def test_torn_marker_of_a_live_pid_falls_back_to_pid_only() -> None:
    folder = paths.consumers_dir(KEY)
    folder.mkdir(parents=True)
    (folder / f"{os.getpid()}.0a1b2c3d").write_text('{"pid": ')
    assert registry.live_consumers(KEY) == 1


def test_foreign_files_in_the_consumers_dir_are_neither_counted_nor_pruned() -> None:
    folder = paths.consumers_dir(KEY)
    folder.mkdir(parents=True)
    foreign = folder / "notes.txt"
    foreign.write_text("keep me")
    assert registry.live_consumers(KEY) == 0
    assert foreign.exists()


# Start errors ---------------------------------------------------------------------------------


def test_error_roundtrip() -> None:
    payload = {"code": "SERVE_EXITED", "message": "serve exited with code 3", "exitCode": 3}
    registry.write_error(KEY, payload)
    got = registry.read_error(KEY)
    assert got is not None
    assert {k: got[k] for k in payload} == payload
    assert isinstance(got["at"], float)
    assert _mode(paths.error_path(KEY)) == 0o600


def test_plain_text_typescript_error_reads_as_spawn_failed() -> None:
    path = paths.error_path(KEY)
    path.write_text("spawn qvac ENOENT\n", encoding="utf-8")
    got = registry.read_error(KEY)
    assert got == {
        "code": "SERVE_SPAWN_FAILED",
        "message": "spawn qvac ENOENT",
        "at": path.stat().st_mtime,
    }


def test_read_error_is_none_when_absent_and_after_clear() -> None:
    assert registry.read_error(KEY) is None
    registry.write_error(KEY, {"code": "SERVE_SPAWN_FAILED", "message": "x"})
    registry.clear_error(KEY)
    assert registry.read_error(KEY) is None
    registry.clear_error(KEY)  # clearing twice is harmless
