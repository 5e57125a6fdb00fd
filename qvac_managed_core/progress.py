"""What a user sees while a cold start takes long: elapsed time and what the serve reports.

In a terminal one line is rewritten in place; in a notebook a new line is printed only when the
serve's message changes, at most every few seconds, so the cell output is not flooded. Quiet when
stderr is neither, when `progress=False`, or when `QVAC_MANAGED_QUIET` is set.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

SHOW_AFTER = 1.0  # seconds; a fast start prints nothing
TERMINAL_EVERY = 0.5
NOTEBOOK_EVERY = 5.0


def in_notebook() -> bool:
    """True inside a Jupyter (ipykernel) kernel."""
    return "ipykernel" in sys.modules


class StartProgress:
    """Callable `(elapsed, message)` that renders start progress to a stream."""

    def __init__(self, stream: TextIO, terminal: bool) -> None:
        self.stream = stream
        self.terminal = terminal
        self.shown = False
        self.last_time = 0.0
        self.last_message = ""

    @classmethod
    @contextmanager
    def maybe(cls, enabled: bool | None) -> Iterator[StartProgress | None]:
        """A progress display if wanted here, closed (line ended) afterwards."""
        stream = sys.stderr
        terminal = bool(getattr(stream, "isatty", lambda: False)())
        if enabled is None:
            enabled = not os.environ.get("QVAC_MANAGED_QUIET") and (terminal or in_notebook())
        if not enabled:
            yield None
            return
        shown = cls(stream, terminal)
        try:
            yield shown
        finally:
            shown.finish()

    def __call__(self, elapsed: float, message: str) -> None:
        if elapsed < SHOW_AFTER:
            return
        now = time.monotonic()
        if self.terminal:
            if now - self.last_time < TERMINAL_EVERY:
                return
            self.stream.write(f"\r\x1b[K[qvac] starting serve: {elapsed:4.0f}s  {message}")
        else:
            if message == self.last_message and now - self.last_time < NOTEBOOK_EVERY * 6:
                return
            if now - self.last_time < NOTEBOOK_EVERY and self.shown:
                return
            self.stream.write(f"[qvac] starting serve: {elapsed:.0f}s  {message}\n")
        self.stream.flush()
        self.shown = True
        self.last_time = now
        self.last_message = message

    def finish(self) -> None:
        if self.shown and self.terminal:
            self.stream.write("\n")
            self.stream.flush()
