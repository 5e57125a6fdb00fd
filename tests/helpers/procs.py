"""Driving consumer processes (tests/helpers/consumer.py) from tests, every wait bounded;
and loading the scripts in tools/ for the tests of their output."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

CONSUMER = Path(__file__).resolve().parent / "consumer.py"


class Consumer:
    """A child process holding one lease; killed by pid when the test ends."""

    def __init__(self, options: dict[str, Any], timeout: float = 120.0, wait: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CONSUMER), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ),
        )
        self.info: dict[str, Any] = self.read(timeout) if wait else {}

    def read(self, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"consumer {self.proc.pid} said nothing within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"consumer {self.proc.pid} exited ({self.proc.wait(5)})")
        return dict(json.loads(line))

    def send(self, command: str, timeout: float = 60.0) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        if command == "exit":
            self.proc.wait(timeout)
            return None
        return self.read(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def load_tool(name: str) -> ModuleType:
    """A script from tools/ imported from its file (tools/ is not a package)."""
    path = Path(__file__).resolve().parents[2] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tools_{name}_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
