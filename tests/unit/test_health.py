"""Health probes against a tiny loopback HTTP server standing in for `qvac serve`."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from qvac_managed_core.health import Health, probe

API_KEY = "test-api-key"


@dataclass
class Answer:
    """What the fake serve answers on /v1/models, and what it saw."""

    status: int = 200
    body: bytes = b'{"object": "list", "data": []}'
    seen_auth: list[str | None] = field(default_factory=list)
    seen_paths: list[str] = field(default_factory=list)

    def models(self, *items: dict[str, Any]) -> None:
        self.status = 200
        self.body = json.dumps({"object": "list", "data": list(items)}).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    answer: Answer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        answer = self.server.answer
        answer.seen_auth.append(self.headers.get("Authorization"))
        answer.seen_paths.append(self.path)
        if self.path != "/v1/models":
            status, body = 404, b"{}"
        elif self.headers.get("Authorization") != f"Bearer {API_KEY}":
            status, body = 401, b'{"error": "unauthorized"}'
        else:
            status, body = answer.status, answer.body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def answer(server: _Server) -> Answer:
    server.answer = Answer()
    return server.answer


@pytest.fixture
def port(server: _Server) -> int:
    return int(server.server_address[1])


def _probe(port: int, expect: tuple[str, ...] = (), api_key: str = API_KEY) -> Health:
    return probe("127.0.0.1", port, api_key, expect=expect, timeout=2.0)


def test_probe_sends_the_bearer_key_to_v1_models(answer: Answer, port: int) -> None:
    _probe(port)
    assert answer.seen_paths == ["/v1/models"]
    assert answer.seen_auth == [f"Bearer {API_KEY}"]


def test_ready_when_every_expected_alias_is_ready(answer: Answer, port: int) -> None:
    answer.models({"id": "chat", "state": "ready"}, {"id": "emb", "state": "ready"})
    health = _probe(port, ("chat", "emb"))
    assert health.status == "ready"
    assert health.ready
    assert health.states == {"chat": "ready", "emb": "ready"}
    assert health.failed_aliases() == []


def test_an_alias_without_state_counts_as_ready(answer: Answer, port: int) -> None:
    answer.models({"id": "chat", "object": "model"})
    health = _probe(port, ("chat",))
    assert health.ready
    assert health.states == {"chat": "ready"}


def test_ready_with_nothing_expected(answer: Answer, port: int) -> None:
    answer.models()
    assert _probe(port).status == "ready"


def test_loading_while_an_expected_alias_loads(answer: Answer, port: int) -> None:
    answer.models({"id": "chat", "state": "ready"}, {"id": "emb", "state": "loading"})
    health = _probe(port, ("chat", "emb"))
    assert health.status == "loading"
    assert not health.ready
    assert health.states["emb"] == "loading"


def test_loading_while_an_expected_alias_is_not_listed(answer: Answer, port: int) -> None:
    answer.models({"id": "chat", "state": "ready"})
    assert _probe(port, ("chat", "emb")).status == "loading"


def test_error_when_an_expected_alias_failed(answer: Answer, port: int) -> None:
    answer.models({"id": "chat", "state": "error"}, {"id": "emb", "state": "loading"})
    health = _probe(port, ("chat", "emb"))
    assert health.status == "error"
    assert not health.ready
    assert health.failed_aliases() == ["chat"]
    assert health.states == {"chat": "error", "emb": "loading"}


def test_a_failed_alias_that_is_not_expected_does_not_block_ready(
    answer: Answer, port: int
) -> None:
    answer.models({"id": "chat", "state": "ready"}, {"id": "lazy", "state": "error"})
    health = _probe(port, ("chat",))
    assert health.status == "ready"
    assert health.failed_aliases() == ["lazy"]


def test_unauthorized_on_401(answer: Answer, port: int) -> None:
    answer.models({"id": "chat", "state": "ready"})
    health = _probe(port, ("chat",), api_key="wrong-key")
    assert health.status == "unauthorized"
    assert health.detail == "HTTP 401"
    assert not health.ready


def test_unauthorized_on_403(answer: Answer, port: int) -> None:
    answer.status = 403
    assert _probe(port).status == "unauthorized"


def test_unreachable_on_a_server_error(answer: Answer, port: int) -> None:
    answer.status = 500
    health = _probe(port)
    assert health.status == "unreachable"
    assert health.detail == "HTTP 500"


@pytest.mark.parametrize(
    "body",
    [b"<html>not json</html>", b"", b"[1, 2]", b'{"data": [{"state": "ready"}]}', b'{"data": 3}'],
)
def test_unreachable_when_the_body_is_not_a_model_list(
    answer: Answer, port: int, body: bytes
) -> None:
    answer.body = body
    health = _probe(port, ("chat",))
    assert health.status == "unreachable"
    assert "model list" in health.detail


def test_unreachable_on_a_closed_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])
    health = _probe(closed, ("chat",))
    assert health.status == "unreachable"
    assert "ConnectionRefusedError" in health.detail
    assert not health.ready
