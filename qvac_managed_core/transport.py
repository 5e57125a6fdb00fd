"""httpx transports that follow a lease's live serve and retry a refused request once.

They also apply `serve_fixes` (stop sequences, the tools hint, the embedding row check).

Every request is retargeted to the serve the lease currently names (its port can change after a
respawn) with that serve's bearer key. On *connection refused* only (never a read error, reset or
timeout, which may have reached the serve) the lease is re-resolved, once for all concurrent
callers, and the request is sent once more.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import httpx

from .errors import LeaseClosedError
from .serve_fixes import afix_response, fix_response

if TYPE_CHECKING:
    from .lease import ServeLease


# A fresh loopback connection per request (~0.1 ms): no idle pooled socket keeps a serve "in
# use" after its lease closed, and no stale keep-alive hides a dead serve behind a reset
# instead of the refused connect that triggers a re-resolve. Plain HTTP: no TLS context to build.
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def is_connection_refused(exc: BaseException) -> bool:
    """True if `exc` (or what caused it) is a refused TCP connect."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return True
        if isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED:
            return True
        if "connection refused" in str(seen).lower() or "errno 111" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retarget(lease: ServeLease, request: httpx.Request) -> httpx.Request:
    if lease.closed:
        raise LeaseClosedError(
            f"The QVAC lease for {lease.fleet_key} is closed: this client can no longer send "
            "requests. Create a new model object to use a serve again."
        )
    url = request.url.copy_with(scheme="http", host=lease.host.strip("[]"), port=lease.port)
    headers = httpx.Headers(request.headers)
    headers["Host"] = url.netloc.decode("ascii")
    headers["Authorization"] = f"Bearer {lease.api_key}"
    return httpx.Request(
        request.method, url, headers=headers, content=request.content,
        extensions=request.extensions,
    )  # fmt: skip


class ServeTransport(httpx.BaseTransport):
    """Sync transport for `httpx.Client(transport=lease.http_transport())`."""

    def __init__(self, lease: ServeLease, inner: httpx.BaseTransport | None = None) -> None:
        self._lease = lease
        self._inner = inner or httpx.HTTPTransport(verify=False, limits=NO_KEEPALIVE)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        generation = self._lease.generation
        try:
            target = _retarget(self._lease, request)
            return fix_response(target, self._inner.handle_request(target))
        except httpx.ConnectError as exc:
            if not is_connection_refused(exc):
                raise
        self._lease.reresolve(generation)
        target = _retarget(self._lease, request)
        return fix_response(target, self._inner.handle_request(target))

    def close(self) -> None:
        self._inner.close()


class AsyncServeTransport(httpx.AsyncBaseTransport):
    """Async transport for `httpx.AsyncClient(transport=lease.async_http_transport())`."""

    def __init__(self, lease: ServeLease, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._lease = lease
        self._inner = inner or httpx.AsyncHTTPTransport(verify=False, limits=NO_KEEPALIVE)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        generation = self._lease.generation
        try:
            target = _retarget(self._lease, request)
            return await afix_response(target, await self._inner.handle_async_request(target))
        except httpx.ConnectError as exc:
            if not is_connection_refused(exc):
                raise
        await self._lease.areresolve(generation)
        target = _retarget(self._lease, request)
        return await afix_response(target, await self._inner.handle_async_request(target))

    async def aclose(self) -> None:
        await self._inner.aclose()


class FixupTransport(httpx.BaseTransport):
    """External mode: no lease to follow, only the serve fixes (stop, tools hint, row check)."""

    def __init__(self, inner: httpx.BaseTransport | None = None, tls: bool = True) -> None:
        self._inner = inner or httpx.HTTPTransport(verify=tls)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return fix_response(request, self._inner.handle_request(request))

    def close(self) -> None:
        self._inner.close()


class AsyncFixupTransport(httpx.AsyncBaseTransport):
    """The async twin of `FixupTransport`."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, tls: bool = True) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport(verify=tls)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return await afix_response(request, await self._inner.handle_async_request(request))

    async def aclose(self) -> None:
        await self._inner.aclose()
