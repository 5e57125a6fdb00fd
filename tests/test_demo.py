"""The main-job command (examples/demo.py) answers and says what the lifecycle did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import stop_runners

pytestmark = pytest.mark.real_serve
DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def test_demo_reports_spawn_reuse_and_reaping(real_serve: str, qvac_home: Path) -> None:
    env = dict(os.environ, QVAC_TEST_MODEL=real_serve)
    try:
        done = subprocess.run(
            [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=240
        )
    finally:
        stop_runners(qvac_home)
    out = done.stdout
    assert done.returncode == 0, done.stderr
    spawned = re.search(r"\[LangChain ChatQvac\] spawned a new serve .*serve pid (\d+), "
                        r"http://127\.0\.0\.1:(\d+)/v1 \(port \2\)", out)  # fmt: skip
    assert spawned, out
    assert "[LlamaIndex QvacLLM] reused a running serve in" in out
    assert f"serve pid {spawned.group(1)}" in out.split("[LlamaIndex QvacLLM]")[1]
    assert "detached: runner pid" in out
    assert "[LangChain] answer:" in out and "[LlamaIndex] answer:" in out
    assert "[LlamaIndex] retrieved: 'Jupiter is the largest planet" in out
    assert "will reap it 60 s after the last consumer left" in out
