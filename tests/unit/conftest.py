"""Shared fixtures of the unit suite: an isolated registry and a PID that is certainly dead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_qvac_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own `$QVAC_HOME`, so nothing touches the real `~/.qvac`."""
    home = tmp_path / "qvac-home"
    monkeypatch.setenv("QVAC_HOME", str(home))
    return home


@pytest.fixture
def dead_pid() -> int:
    """The PID of a short-lived child that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        proc.wait(timeout=10)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    return proc.pid
