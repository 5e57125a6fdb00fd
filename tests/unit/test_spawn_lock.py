"""The per-key spawn lock: taken with O_EXCL, stolen only from a dead or long-unreadable owner."""

from __future__ import annotations

import os
import stat
import time

import pytest

from qvac_managed_core import paths, spawn_lock
from qvac_managed_core.liveness import is_alive

KEY = "0123456789abcdef"


def _write_lock(text: str) -> None:
    paths.lock_path(KEY).write_text(text)


def _age(seconds: float) -> None:
    then = time.time() - seconds
    os.utime(paths.lock_path(KEY), (then, then))


@pytest.fixture
def other_live_pid() -> int:
    pid = os.getppid()
    assert pid != os.getpid() and is_alive(pid)
    return pid


def test_try_lock_creates_the_lock_with_our_pid() -> None:
    assert spawn_lock.try_lock(KEY)
    path = paths.lock_path(KEY)
    assert path.read_text() == str(os.getpid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert spawn_lock.lock_owner(KEY) == os.getpid()


def test_try_lock_fails_while_a_live_other_process_holds_it(other_live_pid: int) -> None:
    _write_lock(str(other_live_pid))
    assert not spawn_lock.try_lock(KEY)
    assert spawn_lock.lock_owner(KEY) == other_live_pid


def test_try_lock_fails_while_we_hold_it() -> None:
    assert spawn_lock.try_lock(KEY)
    assert not spawn_lock.try_lock(KEY)
    assert spawn_lock.lock_owner(KEY) == os.getpid()


def test_a_live_owner_keeps_the_lock_however_old(other_live_pid: int) -> None:
    _write_lock(str(other_live_pid))
    _age(10 * spawn_lock.UNKNOWN_OWNER_STALE_AFTER)
    assert not spawn_lock.try_lock(KEY)
    assert spawn_lock.lock_owner(KEY) == other_live_pid


def test_a_dead_owners_lock_is_stolen(dead_pid: int) -> None:
    _write_lock(str(dead_pid))
    assert spawn_lock.try_lock(KEY)
    assert spawn_lock.lock_owner(KEY) == os.getpid()


@pytest.mark.parametrize("text", ["", "garbage", "0", "-5"])
def test_an_unreadable_young_lock_is_kept(text: str) -> None:
    _write_lock(text)
    assert spawn_lock.lock_owner(KEY) is None
    assert not spawn_lock.try_lock(KEY)
    assert paths.lock_path(KEY).read_text() == text


@pytest.mark.parametrize("text", ["", "garbage"])
def test_an_unreadable_lock_older_than_30s_is_stolen(text: str) -> None:
    assert spawn_lock.UNKNOWN_OWNER_STALE_AFTER == 30.0
    _write_lock(text)
    _age(31)
    assert spawn_lock.try_lock(KEY)
    assert spawn_lock.lock_owner(KEY) == os.getpid()


def test_release_removes_our_own_lock() -> None:
    assert spawn_lock.try_lock(KEY)
    spawn_lock.release(KEY)
    assert not paths.lock_path(KEY).exists()
    assert spawn_lock.try_lock(KEY)


def test_release_keeps_another_processs_lock(other_live_pid: int) -> None:
    _write_lock(str(other_live_pid))
    spawn_lock.release(KEY)
    assert spawn_lock.lock_owner(KEY) == other_live_pid


def test_release_keeps_an_unreadable_lock() -> None:
    _write_lock("")
    spawn_lock.release(KEY)
    assert paths.lock_path(KEY).exists()


def test_release_without_a_lock_is_harmless() -> None:
    spawn_lock.release(KEY)
    assert not paths.lock_path(KEY).exists()
    assert spawn_lock.lock_owner(KEY) is None


def test_locks_of_different_keys_are_independent() -> None:
    assert spawn_lock.try_lock(KEY)
    assert spawn_lock.try_lock(KEY + "-other")


def test_a_lock_retaken_by_a_live_process_during_a_steal_is_not_removed(
    dead_pid: int, other_live_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_lock(str(dead_pid))
    original_stale = spawn_lock._stale

    def stale_then_other_process_steals(path: object) -> bool:
        verdict = original_stale(path)  # type: ignore[arg-type]
        # Deterministic interleaving: right after our check, a live process steals the lock.
        paths.lock_path(KEY).unlink()
        _write_lock(str(other_live_pid))
        monkeypatch.setattr(spawn_lock, "_stale", original_stale)
        return verdict

    monkeypatch.setattr(spawn_lock, "_stale", stale_then_other_process_steals)
    assert not spawn_lock.try_lock(KEY)
    assert spawn_lock.lock_owner(KEY) == other_live_pid
