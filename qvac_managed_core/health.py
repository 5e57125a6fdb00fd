"""Health of a serve: `GET /v1/models` with the bearer key, and every preloaded alias `ready`.

A 200 alone is not health: a preload that failed still lets the serve listen, and lists that
alias with `"state": "error"`. Uses only the standard library so the runner starts fast.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Health:
    """One probe's outcome: `status` is ready, loading, error, unauthorized or unreachable."""

    status: str
    states: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def failed_aliases(self) -> list[str]:
        return sorted(alias for alias, state in self.states.items() if state == "error")


class _DirectConnection(http.client.HTTPConnection):
    """Connects without `getaddrinfo`, whose first call costs ~3 ms (NSS set-up) per process."""

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock


def probe(
    host: str, port: int, api_key: str, expect: Iterable[str] = (), timeout: float = 2.0
) -> Health:
    """Ask the serve for its models; `expect` are the preloaded aliases that must be ready."""
    conn = _DirectConnection(host.strip("[]"), port, timeout=timeout)
    try:
        conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return Health("unreachable", detail=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    if resp.status in (401, 403):
        return Health("unauthorized", detail=f"HTTP {resp.status}")
    if resp.status != 200:
        return Health("unreachable", detail=f"HTTP {resp.status}")
    try:
        data = json.loads(body)
        states = {str(item["id"]): str(item.get("state", "ready")) for item in data.get("data", [])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return Health("unreachable", detail="GET /v1/models did not answer a model list")
    wanted = list(expect)
    if any(states.get(a) == "error" for a in wanted):
        return Health("error", states)
    if all(states.get(a) == "ready" for a in wanted):
        return Health("ready", states)
    return Health("loading", states)
