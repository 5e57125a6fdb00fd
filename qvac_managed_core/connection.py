"""What the LangChain and LlamaIndex adapters share: options, mode choice, the shared lease.

Both adapters are pydantic models; they inherit `LeaseHolder` (the core's options under the same
names, plus close, context managers and copies), call `connect` once at construction, and attach
its `SharedLease`. Copies of an
adapter object (LangChain's `model_copy`, LlamaIndex's re-construction) share one `SharedLease`,
which is released when its last holder closes or is collected, or at interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, Field, PrivateAttr
from typing_extensions import Self  # always there: pydantic depends on it

from .errors import InvalidManagedModelError, LeaseClosedError
from .lease import ServeLease, acquire_plan, build_plan
from .models import EMBEDDING_ENGINE, ModelSpec
from .transport import AsyncFixupTransport, FixupTransport

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"  # the qvac CLI's default host and port
DEFAULT_API_KEY = "qvac"
CHAT_ENGINE = "llamacpp-completion"
SERVE_DEFAULT_CTX = 1024  # the serve's context window when a model config sets no ctx_size


class ManagedServeOptions(BaseModel):
    """The managed-mode options of `qvac_managed_core.acquire`, under the same names."""

    models: list[Any] | None = Field(
        default=None,
        description="Models to serve: constant names, ManagedModel objects or dicts. Giving "
        "models turns managed mode on.",
    )
    managed: bool | None = Field(
        default=None, description="Start or reuse a managed serve (default: True if models)."
    )
    serve_host: str = "127.0.0.1"
    serve_port: int | None = None
    serve_start_timeout: float = 180.0
    serve_bin_path: str | None = None
    reuse: bool | None = None
    serve_idle_timeout: float = 300.0
    close_on_parent_exit: bool = False
    progress: bool | None = Field(
        default=None,
        description="Show cold-start progress (None: on a terminal or in a notebook only).",
        exclude=True,
    )


def options_from(values: dict[str, Any]) -> ManagedServeOptions:
    """The managed-mode options found among an adapter's constructor arguments."""
    names = ManagedServeOptions.model_fields
    return ManagedServeOptions.model_validate(
        {k: v for k, v in values.items() if k in names and v is not None}
    )


def is_managed(managed: bool | None, models: Sequence[Any] | None) -> bool:
    """Managed mode is on when asked for, or when models are given; both must agree."""
    if managed is None:
        return bool(models)
    if managed and not models:
        raise InvalidManagedModelError(
            "managed=True needs models=[...], e.g. models=['QWEN3_600M_INST_Q4']."
        )
    if not managed and models:
        raise InvalidManagedModelError(
            "models=[...] is for managed mode; drop models, or drop managed=False."
        )
    return managed


class SharedLease:
    """One lease held by several adapter objects; closed when the last holder lets go."""

    def __init__(self, lease: ServeLease) -> None:
        self.lease = lease
        self._holders = 0
        self._lock = threading.Lock()

    def hold(self, owner: object) -> LeaseHold:
        """Register `owner`; it lets go on `LeaseHold.release()` or when collected."""
        with self._lock:
            self._holders += 1
        return LeaseHold(self, owner)

    def _let_go(self) -> None:
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self.lease.close()

    @property
    def holders(self) -> int:
        return self._holders

    def __copy__(self) -> SharedLease:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedLease:
        return self


class LeaseHold:
    """One adapter object's share of a `SharedLease`."""

    def __init__(self, shared: SharedLease, owner: object) -> None:
        self.shared = shared
        self._finalizer = weakref.finalize(owner, shared._let_go)

    @property
    def released(self) -> bool:
        return not self._finalizer.alive

    def release(self) -> None:
        """Let go (idempotent)."""
        self._finalizer()

    def check_open(self) -> None:
        """Raise a clear error if this holder was closed."""
        if self.released:
            raise LeaseClosedError(
                "This QVAC model object was closed; create a new one to send requests."
            )

    def __copy__(self) -> LeaseHold:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> LeaseHold:
        return self


class LeaseHolder(ManagedServeOptions):
    """Base of the adapter classes: the options, plus close(), context managers and copies
    that share the lease (each copy holds its own share, so collecting one never closes the
    lease under another)."""

    _qvac_shared: SharedLease | None = PrivateAttr(default=None)
    _qvac_hold: LeaseHold | None = PrivateAttr(default=None)

    def _attach(self, shared: SharedLease | None) -> None:
        """Hold `shared` (managed mode) for this object; external mode holds nothing."""
        self._qvac_shared = shared
        self._qvac_hold = shared.hold(self) if shared is not None else None

    @property
    def lease(self) -> ServeLease | None:
        """The managed serve's lease (None in external mode)."""
        return self._qvac_shared.lease if self._qvac_shared is not None else None

    @property
    def closed(self) -> bool:
        """True once `close()` released this object's share of the lease."""
        return self._qvac_hold is not None and self._qvac_hold.released

    def _check_open(self) -> None:
        """Raise `LeaseClosedError` if closed; adapters call it where requests start."""
        if self._qvac_hold is not None:
            self._qvac_hold.check_open()

    def close(self) -> None:
        """Release this object's share of the lease (idempotent); the serve itself is reaped
        by its runner once nobody uses it for the idle timeout. External mode holds nothing."""
        if self._qvac_hold is not None:
            self._qvac_hold.release()

    async def aclose(self) -> None:
        """`close()` for async code (releasing awaits nothing)."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _share_with(self, new: Self) -> Self:
        if self._qvac_shared is not None:
            new._qvac_hold = self._qvac_shared.hold(new)
        return new

    def __copy__(self) -> Self:
        return self._share_with(super().__copy__())

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        memo = {} if memo is None else memo
        for value in (self.__pydantic_private__ or {}).values():
            memo.setdefault(id(value), value)  # the lease and its share are shared, not copied
        return self._share_with(super().__deepcopy__(memo))


@dataclass
class Connection:
    """Where an adapter sends requests, and (in managed mode) the lease behind it."""

    base_url: str
    api_key: str
    model: str
    shared: SharedLease | None
    specs: tuple[ModelSpec, ...] = ()

    def http_client(self, timeout: float | httpx.Timeout | None = None) -> httpx.Client:
        transport: httpx.BaseTransport = (
            self.shared.lease.http_transport() if self.shared else FixupTransport(tls=self._tls)
        )
        return httpx.Client(transport=transport, timeout=_timeout(timeout))

    def async_http_client(self, timeout: float | httpx.Timeout | None = None) -> httpx.AsyncClient:
        transport: httpx.AsyncBaseTransport = (
            self.shared.lease.async_http_transport()
            if self.shared
            else AsyncFixupTransport(tls=self._tls)
        )
        return httpx.AsyncClient(transport=transport, timeout=_timeout(timeout))

    @property
    def _tls(self) -> bool:
        """Verify certificates only for an https serve (plain http needs no TLS context)."""
        return self.base_url.lower().startswith("https:")

    def spec(self) -> ModelSpec | None:
        """The served model requests go to, when known (managed mode)."""
        return next((s for s in self.specs if s.alias == self.model), None)

    @contextlib.contextmanager
    def released_on_error(self) -> Iterator[None]:
        """Close a just-acquired lease at once if the object that was to hold it fails to build."""
        try:
            yield
        except BaseException:
            if self.shared is not None:
                self.shared.lease.close()
            raise

    def context_window(self) -> int:
        """The model's ctx_size if its config sets one, else the serve's default (1024)."""
        spec = self.spec()
        return (spec.ctx_size if spec else None) or SERVE_DEFAULT_CTX


def _timeout(value: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(value if value is not None else 600.0, connect=10.0)


def pick_model(specs: Sequence[ModelSpec], requested: str | None, embedding: bool) -> str:
    """The alias to use: `requested` (which must be served), else the default of the right kind."""
    aliases = [s.alias for s in specs]
    if requested:
        if requested not in aliases:
            raise InvalidManagedModelError(
                f"model={requested!r} is not served here; the served aliases are "
                f"{', '.join(aliases)}. Pass one of them, or add the model to models=[...]."
            )
        return requested
    kind = [s for s in specs if s.is_embedding == embedding]
    if not kind:
        what, engine = ("embedding", EMBEDDING_ENGINE) if embedding else ("chat", CHAT_ENGINE)
        raise InvalidManagedModelError(
            f"None of models=[{', '.join(aliases)}] is a {what} model: add one "
            f"(for a local file, type={engine!r})."
        )
    default = next((s for s in kind if s.default), kind[0])
    return default.alias


def connect(
    options: ManagedServeOptions,
    *,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    embedding: bool = False,
    custom_clients: Sequence[str] = (),
) -> Connection:
    """Acquire (managed) or point at (external) a serve; raises before spawning on bad input.

    `custom_clients` names HTTP/OpenAI clients the caller passed: not allowed in managed mode,
    where requests must go through the lease's transport (it follows the live serve).
    """
    if not is_managed(options.managed, options.models):
        if not model:
            raise InvalidManagedModelError(
                "External mode needs model=<an alias your qvac serve has> (see GET /v1/models), "
                "or pass models=[...] for a managed serve."
            )
        return Connection(
            base_url=base_url or os.environ.get("QVAC_BASE_URL") or DEFAULT_BASE_URL,
            api_key=api_key or os.environ.get("QVAC_API_KEY") or DEFAULT_API_KEY,
            model=model,
            shared=None,
        )
    if custom_clients:
        raise InvalidManagedModelError(
            f"{'/'.join(custom_clients)} cannot be set in managed mode: requests must go through "
            "the lease's transport, which follows the live serve."
        )
    if base_url:
        raise InvalidManagedModelError(
            "A base URL is for an external serve; in managed mode the library picks the port. "
            "Drop the base URL, or drop models=[...] to use the external serve."
        )
    plan = build_plan(  # validates everything, including `model`, before anything is spawned
        options.models or [],
        options.serve_host,
        options.serve_port,
        options.serve_start_timeout,
        options.serve_bin_path,
        options.reuse,
        options.serve_idle_timeout,
    )
    alias = pick_model(plan.specs, model, embedding)
    lease = acquire_plan(
        plan, close_on_parent_exit=options.close_on_parent_exit, progress=options.progress
    )
    return Connection(
        base_url=lease.base_url,
        api_key=lease.api_key,
        model=alias,
        shared=SharedLease(lease),
        specs=lease.models,
    )
