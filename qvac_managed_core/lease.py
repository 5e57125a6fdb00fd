"""`acquire` and the `ServeLease` adapters hold.

Leases in one process for the same fleet key share one handle (and one consumer marker), so a
second lease costs no HTTP round-trip; each lease still closes on its own. A lease that is never
closed is released when it is collected or at interpreter exit.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import registry
from .errors import LeaseClosedError, QvacManagedModeError
from .fleet import fleet_key, private_key
from .models import ModelInput, ModelSpec, default_alias, normalize_models
from .progress import StartProgress
from .resolve import ServePlan, resolve
from .serve_process import resolve_serve_bin

if TYPE_CHECKING:
    from .transport import AsyncServeTransport, ServeTransport


FAILURE_TTL = 5.0  # seconds a failed re-resolve is answered from memory


class _Handle:
    """One process's attachment to one serve: its record, marker and refcount."""

    def __init__(self, plan: ServePlan) -> None:
        self.plan = plan
        self.record: registry.ServeRecord | None = None
        self.marker: Path | None = None
        self.refs = 0
        self.generation = 0
        self.lock = threading.Lock()
        self.spawned = False
        # A failed re-resolve is remembered briefly, so a client's own retries of the same
        # request do not turn one dead serve into a string of respawn attempts.
        self.failure: tuple[float, int, BaseException] | None = None

    def ensure_resolved(self, progress: StartProgress | None) -> None:
        with self.lock:
            if self.record is None:
                self._resolve(progress)

    def reresolve(self, observed_generation: int) -> None:
        """Reattach or respawn, once for all callers that saw the same generation fail."""
        with self.lock:
            if self.generation != observed_generation or self.refs <= 0:
                return
            if self.failure is not None:
                when, generation, error = self.failure
                if generation == observed_generation and time.monotonic() - when < FAILURE_TTL:
                    raise error
            try:
                self._resolve(None)
            except QvacManagedModeError as exc:
                self.failure = (time.monotonic(), observed_generation, exc)
                raise
            self.failure = None

    def _resolve(self, progress: StartProgress | None) -> None:
        before = self.record.serve_pid if self.record else None
        found = resolve(self.plan, self.marker, progress)
        self.record, self.marker, self.spawned = found.record, found.marker, found.spawned
        if before != found.record.serve_pid:
            self.generation += 1

    def release(self) -> None:
        with _TABLE_LOCK:
            self.refs -= 1
            if self.refs > 0:
                return
            if _HANDLES.get(self.plan.key) is self:
                del _HANDLES[self.plan.key]
        if self.marker is not None:
            registry.remove_consumer(self.marker)
            self.marker = None


_HANDLES: dict[str, _Handle] = {}
_TABLE_LOCK = threading.Lock()


class ServeLease:
    """A live, healthy `qvac serve` for a model set, held until `close()`.

    Closing only detaches: the serve keeps running for other consumers and is reaped by its
    runner once nobody has used it for the idle timeout.
    """

    def __init__(self, handle: _Handle, reused: bool) -> None:
        self._handle = handle
        self._closed = False
        self.reused = reused
        """True if this lease attached to a serve that was already running."""
        self._finalizer = weakref.finalize(self, handle.release)

    # -- what the serve is ----------------------------------------------------------------

    @property
    def _record(self) -> registry.ServeRecord:
        if self._closed:
            raise LeaseClosedError(
                "This lease is closed; acquire a new one (or build a new model object)."
            )
        record = self._handle.record
        assert record is not None
        return record

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL of the live serve, e.g. `http://127.0.0.1:41234/v1`."""
        return self._record.base_url

    @property
    def port(self) -> int:
        return self._record.port

    @property
    def host(self) -> str:
        return self._record.host

    @property
    def pid(self) -> int:
        """PID of the `qvac serve` process."""
        return self._record.serve_pid

    @property
    def runner_pid(self) -> int:
        """PID of the detached runner that owns the serve."""
        return self._record.runner_pid

    @property
    def api_key(self) -> str:
        """The serve's bearer key (generated per serve; also in the 0600 registry record)."""
        return self._record.api_key

    @property
    def fleet_key(self) -> str:
        return self._handle.plan.key

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """The validated models this serve has, in the order given."""
        return self._handle.plan.specs

    @property
    def default_model(self) -> str:
        """The alias requests go to when they name none."""
        return default_alias(self._handle.plan.specs)

    @property
    def idle_timeout(self) -> float:
        return self._handle.plan.idle_timeout

    @property
    def generation(self) -> int:
        """Bumped each time the lease is retargeted to a new serve process."""
        return self._handle.generation

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Detach (idempotent); never stops a serve another consumer still uses."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def reresolve(self, observed_generation: int | None = None) -> None:
        """Reattach to the key's live serve or respawn it; single-flight across threads."""
        if self._closed:
            raise LeaseClosedError("This lease is closed; it cannot be re-resolved.")
        gen = self._handle.generation if observed_generation is None else observed_generation
        self._handle.reresolve(gen)

    async def areresolve(self, observed_generation: int | None = None) -> None:
        """`reresolve` without blocking the event loop."""
        await asyncio.to_thread(self.reresolve, observed_generation)

    def http_transport(self) -> ServeTransport:
        """An httpx transport that follows this lease's serve and retries a refused request once."""
        from .transport import ServeTransport

        return ServeTransport(self)

    def async_http_transport(self) -> AsyncServeTransport:
        """The `httpx.AsyncClient` twin of `http_transport`."""
        from .transport import AsyncServeTransport

        return AsyncServeTransport(self)

    def __enter__(self) -> ServeLease:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> ServeLease:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        record = self._handle.record
        state = "closed" if self._closed or record is None else record.base_url
        return f"ServeLease(fleet_key={self.fleet_key!r}, {state})"


def build_plan(
    models: Sequence[ModelInput] | ModelInput,
    serve_host: str = "127.0.0.1",
    serve_port: int | None = None,
    serve_start_timeout: float = 180.0,
    serve_bin_path: str | None = None,
    reuse: bool | None = None,
    serve_idle_timeout: float = 300.0,
) -> ServePlan:
    """Validate every option and compute the fleet key; raises before anything is spawned."""
    from .errors import InvalidManagedModelError

    specs = normalize_models(models)  # type: ignore[arg-type]
    if serve_port is not None and not (0 < int(serve_port) < 65536):
        raise InvalidManagedModelError(f"serve_port={serve_port} is not a TCP port (1-65535).")
    if serve_start_timeout <= 0:
        raise InvalidManagedModelError("serve_start_timeout must be > 0 seconds.")
    if serve_idle_timeout < 0:
        raise InvalidManagedModelError("serve_idle_timeout must be >= 0 seconds.")
    if serve_bin_path is not None:
        serve_bin_path = resolve_serve_bin(serve_bin_path)
    key = fleet_key(specs, serve_host, serve_bin_path, serve_port)
    private = reuse is False or (reuse is None and serve_port is not None)
    if private:
        key = private_key(key)
    return ServePlan(
        key=key,
        specs=specs,
        host=serve_host,
        pinned_port=serve_port,
        serve_bin_path=serve_bin_path,
        start_timeout=float(serve_start_timeout),
        idle_timeout=0.0 if private else float(serve_idle_timeout),
    )


def acquire(
    models: Sequence[ModelInput] | ModelInput,
    serve_host: str = "127.0.0.1",
    serve_port: int | None = None,
    serve_start_timeout: float = 180.0,
    serve_bin_path: str | None = None,
    reuse: bool | None = None,
    serve_idle_timeout: float = 300.0,
    close_on_parent_exit: bool = False,
    progress: bool | None = None,
) -> ServeLease:
    """A lease on a healthy serve for `models`: reused if any process runs one, else started.

    Blocking, and safe to call while an event loop runs in this thread (it never uses asyncio).
    `progress` shows a cold start's progress on stderr (None: only when stderr is a terminal
    or a notebook).
    """
    plan = build_plan(
        models, serve_host, serve_port, serve_start_timeout, serve_bin_path, reuse,
        serve_idle_timeout,
    )  # fmt: skip
    return acquire_plan(plan, close_on_parent_exit=close_on_parent_exit, progress=progress)


def acquire_plan(
    plan: ServePlan, close_on_parent_exit: bool = False, progress: bool | None = None
) -> ServeLease:
    """`acquire` for a plan `build_plan` already validated (adapters validate first)."""
    with _TABLE_LOCK:
        handle = _HANDLES.get(plan.key)
        if handle is None:
            handle = _Handle(plan)
            _HANDLES[plan.key] = handle
        handle.refs += 1
    attached = handle.record is not None
    try:
        with StartProgress.maybe(progress) as shown:
            handle.ensure_resolved(shown)
    except BaseException:
        handle.release()
        raise
    lease = ServeLease(handle, reused=attached or not handle.spawned)
    if close_on_parent_exit:
        _ParentWatch.add(lease)
    return lease


async def aacquire(*args: Any, **kwargs: Any) -> ServeLease:
    """`acquire` for code already in an event loop: runs it in a worker thread."""
    return await asyncio.to_thread(acquire, *args, **kwargs)


_PARENT_AT_IMPORT = os.getppid()  # captured early: the parent may die during a slow acquire


class _ParentWatch:
    """Closes the leases that asked for it once this process's parent is gone."""

    _leases: weakref.WeakSet[ServeLease] = weakref.WeakSet()
    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    @classmethod
    def add(cls, lease: ServeLease) -> None:
        with cls._lock:
            cls._leases.add(lease)
            if cls._thread is None:
                cls._thread = threading.Thread(
                    target=cls._watch, args=(_PARENT_AT_IMPORT,), name="qvac-parent-watch",
                    daemon=True,
                )  # fmt: skip
                cls._thread.start()

    @classmethod
    def _watch(cls, parent: int) -> None:
        from .liveness import is_alive, start_time

        started = start_time(parent)
        stop = threading.Event()
        while True:
            if os.getppid() != parent or not is_alive(parent, started):
                for lease in list(cls._leases):
                    lease.close()
                with cls._lock:
                    cls._thread = None  # a later lease asking for it is closed at once
                return
            stop.wait(0.5)
