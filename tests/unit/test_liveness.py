"""PID liveness that survives PID reuse and does not mistake zombies for live processes."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psutil
import pytest

from qvac_managed_core.liveness import START_TIME_TOLERANCE, is_alive, start_time


def _own_start() -> float:
    started = start_time(os.getpid())
    assert started is not None
    return started


def test_own_pid_is_alive() -> None:
    assert is_alive(os.getpid())
    assert is_alive(os.getpid(), _own_start())


def test_start_time_is_the_process_create_time() -> None:
    assert start_time(os.getpid()) == psutil.Process(os.getpid()).create_time()


def test_dead_pid_is_dead(dead_pid: int) -> None:
    assert not is_alive(dead_pid)
    assert start_time(dead_pid) is None


def test_zombie_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Block until the child has exited, but leave it unreaped (a zombie).
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        assert not is_alive(proc.pid)
        assert not is_alive(proc.pid, start_time(proc.pid))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_live_child_is_alive_and_dead_once_killed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        assert is_alive(proc.pid, start_time(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    assert not is_alive(proc.pid)


@pytest.mark.parametrize("factor", [2.0, -2.0, 100.0])
def test_wrong_start_time_is_dead(factor: float) -> None:
    assert not is_alive(os.getpid(), _own_start() + factor * START_TIME_TOLERANCE)


@pytest.mark.parametrize("factor", [0.5, -0.5, 0.99, -0.99, 0.0])
def test_start_time_within_tolerance_is_alive(factor: float) -> None:
    assert is_alive(os.getpid(), _own_start() + factor * START_TIME_TOLERANCE)


def test_tolerance_is_one_second() -> None:
    assert START_TIME_TOLERANCE == 1.0


@pytest.mark.parametrize("pid", [0, -1, -os.getpid(), True, False, None, "1", 1.0])
def test_invalid_pids_are_dead(pid: Any) -> None:
    assert not is_alive(pid)
    assert not is_alive(pid, _own_start())
