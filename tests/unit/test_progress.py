"""Cold-start progress: rewritten in place on a terminal, sparse in a notebook, quiet otherwise."""

from __future__ import annotations

import io
import sys

import pytest

from qvac_managed_core import progress
from qvac_managed_core.progress import StartProgress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    return fake


def feed(shown: StartProgress, clock: Clock, seconds: int, message: str = "Loading") -> None:
    for elapsed in range(seconds * 10):
        clock.now += 0.1
        shown(elapsed / 10, message)


def test_terminal_rewrites_one_line_with_elapsed_time(clock: Clock) -> None:
    stream = io.StringIO()
    shown = StartProgress(stream, terminal=True)
    feed(shown, clock, 5, 'Loading model "gemma"')
    shown.finish()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, ended once
    assert text.count("\r") >= 5  # updated in place about twice a second
    assert 'Loading model "gemma"' in text and "starting serve:    4s" in text


def test_notebook_prints_sparse_new_lines(clock: Clock) -> None:
    stream = io.StringIO()
    shown = StartProgress(stream, terminal=False)
    feed(shown, clock, 60)
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 3, lines  # a minute of the same message: not a flood
    assert "\r" not in stream.getvalue()


def test_fast_start_prints_nothing(clock: Clock) -> None:
    stream = io.StringIO()
    shown = StartProgress(stream, terminal=True)
    shown(0.5, "Loading")
    shown.finish()
    assert stream.getvalue() == ""


def test_quiet_when_not_a_terminal_or_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    with StartProgress.maybe(None) as shown:
        assert shown is None
    with StartProgress.maybe(False) as shown:
        assert shown is None
    with StartProgress.maybe(True) as shown:
        assert shown is not None


def test_quiet_env_wins_in_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    monkeypatch.setenv("QVAC_MANAGED_QUIET", "1")
    with StartProgress.maybe(None) as shown:
        assert shown is None
    monkeypatch.delenv("QVAC_MANAGED_QUIET")
    with StartProgress.maybe(None) as shown:
        assert shown is not None and not shown.terminal
