"""QvacLLM and QvacEmbedding without a serve: construction, validation, metadata, serialization,
close() and copies. Managed mode runs on a stand-in lease whose transport is the core's
`ServeTransport` over an in-memory handler, so requests still pass through the core's fixes."""

from __future__ import annotations

import copy
import gc
import json
import logging
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama_index.core.llms import ChatMessage

from llama_index_qvac import QvacEmbedding, QvacLLM, _managed
from qvac_managed_core import InvalidManagedModelError, LeaseClosedError, normalize_models
from qvac_managed_core.connection import (
    Connection,
    ManagedServeOptions,
    SharedLease,
    pick_model,
)
from qvac_managed_core.transport import AsyncServeTransport, ServeTransport
from tests.conftest import chat_spec, embed_spec, processes_of

EXTERNAL = {"api_base": "http://127.0.0.1:9/v1", "model": "gemma"}


def reply(request: httpx.Request) -> httpx.Response:
    """A minimal OpenAI-style serve: one chat answer, or one 3-float row per embedding input
    (two rows for the input "two rows", as a serve without pooling would)."""
    body = json.loads(request.content)
    if request.url.path.endswith("/embeddings"):
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        rows = [[float(len(t)), float(i), 1.0] for i, t in enumerate(texts)]
        if texts == ["two rows"]:
            rows.append([0.0, 0.0, 0.0])
        data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
        return httpx.Response(200, json={"object": "list", "data": data, "model": body["model"]})
    message = {"role": "assistant", "content": f"hello from {body['model']}"}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    payload = {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [choice], "usage": usage}  # fmt: skip
    return httpx.Response(200, json=payload)


class StubLease:
    """What Connection, SharedLease and the core's transports use of a `ServeLease`."""

    def __init__(self) -> None:
        self.host, self.port, self.api_key = "127.0.0.1", 40001, "serve-secret"
        self.closed, self.generation, self.fleet_key = False, 0, "stub"
        self.requests: list[str] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        assert request.headers["Authorization"] == "Bearer serve-secret"
        return reply(request)

    def http_transport(self) -> ServeTransport:
        return ServeTransport(self, inner=httpx.MockTransport(self._handle))  # type: ignore[arg-type]

    def async_http_transport(self) -> AsyncServeTransport:
        return AsyncServeTransport(self, inner=httpx.MockTransport(self._handle))  # type: ignore[arg-type]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def stub_connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[StubLease]]:
    """Managed mode on stand-in leases: `connect` validates the models and picks the alias as the
    core does, then returns a connection to a new StubLease (listed in the returned list)."""
    leases: list[StubLease] = []

    def fake_connect(
        options: ManagedServeOptions,
        *,
        model: str | None,
        base_url: str | None,
        api_key: str | None,
        embedding: bool = False,
        custom_clients: Sequence[str] = (),
    ) -> Connection:
        assert base_url is None and api_key is None, "managed re-construction got lease fields"
        assert not custom_clients
        specs = normalize_models(options.models)
        lease = StubLease()
        leases.append(lease)
        return Connection(
            base_url="http://127.0.0.1:40001/v1",
            api_key=lease.api_key,
            model=pick_model(specs, model, embedding),
            shared=SharedLease(lease),  # type: ignore[arg-type]
            specs=specs,
        )

    def install() -> list[StubLease]:
        monkeypatch.setattr(_managed, "connect", fake_connect)
        return leases

    return install


@pytest.fixture
def gguf(tmp_path: Path) -> str:
    """A file that passes the spec's existence check (it is never loaded)."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return str(path)


def models(gguf: str, ctx_size: int = 4096) -> list[dict[str, Any]]:
    chat = chat_spec(gguf, config={"ctx_size": ctx_size})
    return [chat.model_dump(exclude_none=True), embed_spec(gguf).model_dump(exclude_none=True)]


def test_class_names_are_qvac_in_dumps() -> None:
    assert QvacLLM.class_name() == "QvacLLM"
    assert QvacEmbedding.class_name() == "QvacEmbedding"
    assert QvacLLM(**EXTERNAL).to_dict()["class_name"] == "QvacLLM"
    embedding = QvacEmbedding(api_base=EXTERNAL["api_base"], model_name="gemma-embed")
    assert embedding.to_dict()["class_name"] == "QvacEmbedding"


def test_metadata_comes_from_the_connection(
    stub_connect: Callable[..., list[StubLease]], gguf: str
) -> None:
    stub_connect()
    llm = QvacLLM(models=models(gguf, ctx_size=4096), max_tokens=16)
    meta = llm.metadata
    assert meta.context_window == 4096  # the model config's ctx_size
    assert meta.num_output == 16
    assert meta.is_chat_model is True
    assert meta.is_function_calling_model is False
    assert meta.model_name == "gemma"  # the default chat alias, picked by the core
    tools = QvacLLM(models=models(gguf), is_function_calling_model=True)
    assert tools.metadata.is_function_calling_model is True
    assert tools.metadata.num_output == -1  # no max_tokens: LlamaIndex's "unknown"


def test_context_window_defaults_to_the_serve_default_without_ctx_size() -> None:
    assert QvacLLM(**EXTERNAL).metadata.context_window == 1024
    assert QvacLLM(**EXTERNAL, context_window=8192).metadata.context_window == 8192


def test_requests_wait_for_a_slow_local_model() -> None:
    embedding = QvacEmbedding(api_base=EXTERNAL["api_base"], model_name="gemma-embed")
    assert QvacLLM(**EXTERNAL).timeout == embedding.timeout == 600.0  # not LlamaIndex's 60 s
    assert QvacLLM(**EXTERNAL, timeout=5.0).timeout == 5.0


def test_external_mode_uses_env_and_spawns_nothing(
    qvac_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QVAC_BASE_URL", "http://127.0.0.1:7000/v1")
    monkeypatch.setenv("QVAC_API_KEY", "env-key")
    llm = QvacLLM(model="gemma")
    embedding = QvacEmbedding(model_name="gemma-embed")
    for obj in (llm, embedding):
        assert obj.api_base == "http://127.0.0.1:7000/v1"
        assert obj.api_key == "env-key"
        assert obj.lease is None
    assert not processes_of(qvac_home)
    assert not (qvac_home / "managed-serves").exists()


def test_external_mode_without_model_is_a_clear_error() -> None:
    with pytest.raises(InvalidManagedModelError, match=r"External mode needs model="):
        QvacLLM(api_base=EXTERNAL["api_base"])
    with pytest.raises(InvalidManagedModelError, match=r"External mode needs model="):
        QvacEmbedding(api_base=EXTERNAL["api_base"])


def test_model_not_served_is_an_error_before_anything_spawns(qvac_home: Path, gguf: str) -> None:
    with pytest.raises(InvalidManagedModelError, match=r"model='nope' is not served here"):
        QvacLLM(models=models(gguf), model="nope")
    with pytest.raises(InvalidManagedModelError, match=r"is not served here"):
        QvacEmbedding(models=models(gguf), model_name="nope")
    with pytest.raises(InvalidManagedModelError, match=r"is a embedding model"):
        QvacEmbedding(models=[chat_spec(gguf)])
    assert not processes_of(qvac_home)
    assert not (qvac_home / "managed-serves").exists()


def test_managed_mode_rejects_a_base_url_and_own_clients(qvac_home: Path, gguf: str) -> None:
    with pytest.raises(InvalidManagedModelError, match=r"A base URL is for an external serve"):
        QvacLLM(models=models(gguf), api_base="http://127.0.0.1:9/v1")
    with httpx.Client() as own, pytest.raises(InvalidManagedModelError, match=r"managed mode"):
        QvacLLM(models=models(gguf), http_client=own)
    with pytest.raises(InvalidManagedModelError, match=r"managed=True needs models"):
        QvacEmbedding(managed=True)
    assert not processes_of(qvac_home)


def test_external_mode_round_trips_and_close_is_a_no_op() -> None:
    llm = QvacLLM(**EXTERNAL, max_tokens=16, api_key="mine")
    data = llm.to_dict()
    assert data["api_base"] == EXTERNAL["api_base"] and data["api_key"] == "mine"
    for again in (QvacLLM.from_dict(data), pickle.loads(pickle.dumps(llm))):
        assert isinstance(again, QvacLLM)
        assert (again.api_base, again.api_key) == (EXTERNAL["api_base"], "mine")
        assert again.model == "gemma"
        assert again.max_tokens == 16
    llm.close()
    llm.close()
    assert llm.closed is False  # nothing is held in external mode
    assert llm._get_client() is not None


def test_managed_dumps_and_pickles_leave_out_lease_fields_and_reconnect(
    stub_connect: Callable[..., list[StubLease]],
    gguf: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    leases = stub_connect()
    llm = QvacLLM(models=models(gguf), max_tokens=16)
    data = llm.to_dict()
    assert "api_base" not in data and "api_key" not in data
    assert "serve-secret" not in json.dumps(data) and "serve-secret" not in repr(llm)
    assert data["model"] == "gemma" and data["models"] == models(gguf)
    with caplog.at_level(logging.WARNING):
        rebuilt = [QvacLLM.from_dict(data), QvacLLM.from_json(llm.to_json())]
        rebuilt.append(pickle.loads(pickle.dumps(llm)))
    assert "unpickleable" not in caplog.text  # the lease and clients are never offered
    assert len(leases) == 4  # each re-construction connected again
    for n, again in enumerate(rebuilt, start=1):
        assert again.lease is leases[n]
        assert again.complete("hi").text == "hello from gemma"
    embedding = QvacEmbedding(models=models(gguf))
    unpickled = pickle.loads(pickle.dumps(embedding))
    assert isinstance(unpickled, QvacEmbedding) and unpickled.model_name == "gemma-embed"
    assert unpickled.lease is not embedding.lease
    assert unpickled.lease is leases[-1]  # type: ignore[comparison-overlap]


async def test_request_after_close_raises_lease_closed_error(
    stub_connect: Callable[..., list[StubLease]], gguf: str
) -> None:
    leases = stub_connect()
    llm = QvacLLM(models=models(gguf), max_tokens=16)
    embedding = QvacEmbedding(models=models(gguf))
    assert llm.complete("hi").text == "hello from gemma"
    assert len(embedding.get_text_embedding("hi")) == 3
    sent = len(leases[0].requests) + len(leases[1].requests)
    llm.close()
    llm.close()  # idempotent
    await embedding.aclose()
    assert llm.closed and embedding.closed and leases[0].closed and leases[1].closed
    messages = [ChatMessage(role="user", content="hi")]
    with pytest.raises(LeaseClosedError):
        llm.complete("hi")
    with pytest.raises(LeaseClosedError):
        llm.stream_chat(messages)
    with pytest.raises(LeaseClosedError):
        await llm.achat(messages)
    with pytest.raises(LeaseClosedError):
        embedding.get_text_embedding("hi")
    with pytest.raises(LeaseClosedError):
        await embedding.aget_text_embedding("hi")
    assert len(leases[0].requests) + len(leases[1].requests) == sent  # nothing was sent


async def test_context_managers_close(
    stub_connect: Callable[..., list[StubLease]], gguf: str
) -> None:
    leases = stub_connect()
    with QvacLLM(models=models(gguf)) as llm:
        assert llm.chat([ChatMessage(role="user", content="hi")]).message.content
    async with QvacEmbedding(models=models(gguf)) as embedding:
        assert len(await embedding.aget_text_embedding("hi")) == 3
    assert llm.closed and embedding.closed
    assert all(lease.closed for lease in leases)


def test_copies_hold_their_own_share_of_the_lease(
    stub_connect: Callable[..., list[StubLease]], gguf: str
) -> None:
    leases = stub_connect()
    llm = QvacLLM(models=models(gguf), max_tokens=16)
    copies = [llm.model_copy(update={"temperature": 0.0}), copy.copy(llm), copy.deepcopy(llm)]
    assert all(c.lease is llm.lease for c in copies)
    llm.close()
    assert not leases[0].closed
    for c in copies:
        assert c.complete("hi").text == "hello from gemma"
        c.close()
    assert leases[0].closed


def test_collection_releases_the_lease(
    stub_connect: Callable[..., list[StubLease]], gguf: str
) -> None:
    leases = stub_connect()
    llm = QvacLLM(models=models(gguf))
    embedding = QvacEmbedding(models=models(gguf))
    assert llm.complete("hi").text and embedding.get_text_embedding("hi")
    del llm, embedding
    gc.collect()
    assert [lease.closed for lease in leases] == [True, True]


def test_failed_construction_releases_the_lease(
    stub_connect: Callable[..., list[StubLease]], gguf: str
) -> None:
    leases = stub_connect()
    with pytest.raises(ValueError, match="temperature"):
        QvacLLM(models=models(gguf), temperature=5.0)
    assert len(leases) == 1 and leases[0].closed


def test_embeddings_are_one_row_per_input_and_a_wrong_count_is_a_clear_error(
    stub_connect: Callable[..., list[StubLease]], gguf: str
) -> None:
    stub_connect()
    embedding = QvacEmbedding(models=models(gguf), max_retries=0)
    assert embedding.model_name == "gemma-embed"
    rows = embedding.get_text_embedding_batch(["a", "bb", "ccc"])
    assert [row[0] for row in rows] == [1.0, 2.0, 3.0]  # in input order
    with pytest.raises(openai.UnprocessableEntityError, match=r"without pooling") as info:
        embedding.get_text_embedding("two rows")
    assert info.value.status_code == 422
