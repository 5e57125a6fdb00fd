"""QvacLLM and QvacEmbedding against the real `qvac serve` and the real 270M test model."""

from __future__ import annotations

import gc
import json
import math
import os
import pickle
import subprocess
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path

import openai
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.core.tools import FunctionTool

from langchain_qvac import ChatQvac
from llama_index_qvac import QvacEmbedding, QvacLLM
from qvac_managed_core import LeaseClosedError
from tests.conftest import chat_spec, embed_spec, kill_serve, wait_reaped
from tests.helpers.procs import Consumer

pytestmark = pytest.mark.real_serve

IDLE = 0.5  # seconds an unused serve lives on, so every test can await its reaping
# Four topics far apart; each query shares words with its document, which the mean-pooled
# 270M model ranks first (measured, with a clear margin).
DOCUMENTS = {
    "cats": "Cats are small furry pets that purr, chase mice and sleep most of the day.",
    "stocks": "The stock market fell sharply today as investors sold bank shares.",
    "bread": "To bake bread, mix flour, water, yeast and salt, then knead the dough and bake "
    "it in a hot oven.",
    "football": "The football team won the championship final with a late goal in the last minute.",
}
QUERIES = {
    "Which animal purrs and chases mice?": "cats",
    "What happened to bank shares and investors?": "stocks",
    "How do I bake bread with flour and yeast?": "bread",
    "Who won the football championship final?": "football",
}
MESSAGES = [ChatMessage(role="user", content="Say hello.")]


def qvac_llm(model_path: str, **options: object) -> QvacLLM:
    return QvacLLM(
        models=[chat_spec(model_path)], max_tokens=16, serve_idle_timeout=IDLE, **options
    )


def markers(home: Path, fleet_key: str) -> list[Path]:
    """The consumer markers of a serve (one per process attached to it)."""
    folder = home / "managed-serves" / f"{fleet_key}.consumers"
    return list(folder.iterdir()) if folder.is_dir() else []


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """LlamaIndex's global Settings start unset, and get their llm and embed_model back after."""
    monkeypatch.setattr(Settings, "_llm", None)
    monkeypatch.setattr(Settings, "_embed_model", None)


def test_complete_chat_and_stream_chat_answer(real_serve: str, qvac_home: Path) -> None:
    llm = qvac_llm(real_serve)
    assert llm.metadata.context_window == 2048  # chat_spec's ctx_size
    assert (llm.metadata.model_name, llm.metadata.num_output) == ("gemma", 16)
    completion = llm.complete("The capital of France is")
    assert completion.text.strip()
    assert completion.raw is not None and completion.raw.usage.completion_tokens <= 16
    chat = llm.chat(MESSAGES)
    assert chat.message.role == "assistant" and chat.message.content
    chunks = list(llm.stream_chat(MESSAGES))
    assert len(chunks) > 1
    assert "".join(c.delta or "" for c in chunks) == chunks[-1].message.content
    assert chunks[-1].message.content
    llm.close()
    wait_reaped(qvac_home)


async def test_achat_and_astream_complete_answer(real_serve: str, qvac_home: Path) -> None:
    async with qvac_llm(real_serve) as llm:
        chat = await llm.achat(MESSAGES)
        assert chat.message.role == "assistant" and chat.message.content
        stream = await llm.astream_complete("Once upon a time")
        chunks = [chunk async for chunk in stream]
        assert len(chunks) > 1
        assert "".join(c.delta or "" for c in chunks) == chunks[-1].text
        assert chunks[-1].text
    assert llm.closed
    with pytest.raises(LeaseClosedError):
        await llm.achat(MESSAGES)
    wait_reaped(qvac_home)


def test_close_releases_the_lease_and_later_requests_raise(
    real_serve: str, qvac_home: Path
) -> None:
    both = [chat_spec(real_serve), embed_spec(real_serve)]
    llm = QvacLLM(models=both, max_tokens=16, serve_idle_timeout=IDLE)
    embedding = QvacEmbedding(models=both, serve_idle_timeout=IDLE)
    assert llm.lease is not None and embedding.lease is not None
    key = llm.lease.fleet_key
    assert llm.complete("hi").text and embedding.get_text_embedding("hi")
    assert len(markers(qvac_home, key)) == 1
    llm.close()
    llm.close()  # idempotent
    assert llm.closed and not embedding.closed
    with pytest.raises(LeaseClosedError):
        llm.complete("hi")
    with pytest.raises(LeaseClosedError):
        llm.stream_chat(MESSAGES)
    assert embedding.get_text_embedding("hi")  # the other holder is unaffected
    assert len(markers(qvac_home, key)) == 1
    embedding.close()
    assert markers(qvac_home, key) == []  # no holder left: this process let the serve go
    with pytest.raises(LeaseClosedError):
        embedding.get_text_embedding("hi")
    wait_reaped(qvac_home)


def test_embeddings_are_per_input_and_meaningful(real_serve: str, qvac_home: Path) -> None:
    with QvacEmbedding(models=[embed_spec(real_serve)], serve_idle_timeout=IDLE) as embedding:
        assert embedding.model_name == "gemma-embed"
        texts = list(DOCUMENTS.values())
        vectors = embedding.get_text_embedding_batch(texts)
        assert len(vectors) == len(texts)
        assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 1
        assert len({tuple(v) for v in vectors}) == len(texts)  # one distinct vector per text
        assert cosine(embedding.get_text_embedding(texts[0]), vectors[0]) > 0.999
        query = embedding.get_query_embedding("Which animal purrs and chases mice?")
        scores = [cosine(query, v) for v in vectors]
        assert max(range(len(scores)), key=scores.__getitem__) == 0
    wait_reaped(qvac_home)


@pytest.mark.usefixtures("clean_settings")
def test_settings_build_an_index_that_retrieves_the_right_node(
    real_serve: str, qvac_home: Path
) -> None:
    both = [chat_spec(real_serve), embed_spec(real_serve)]
    llm = QvacLLM(models=both, max_tokens=16, serve_idle_timeout=IDLE)
    embedding = QvacEmbedding(models=both, serve_idle_timeout=IDLE)
    assert llm.lease and embedding.lease and llm.lease.pid == embedding.lease.pid  # one serve
    assert (llm.model, embedding.model_name) == ("gemma", "gemma-embed")
    Settings.llm = llm
    Settings.embed_model = embedding
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCUMENTS.values()])
    retriever = index.as_retriever(similarity_top_k=1)
    for query, topic in QUERIES.items():
        found = retriever.retrieve(query)
        assert [n.node.get_content() for n in found] == [DOCUMENTS[topic]], query
    engine = index.as_query_engine(similarity_top_k=1)
    response = engine.query("Which animal purrs and chases mice?")
    assert [n.node.get_content() for n in response.source_nodes] == [DOCUMENTS["cats"]]
    assert str(response).strip()  # the answer was written by QvacLLM from that node
    llm.close()
    embedding.close()
    wait_reaped(qvac_home)


@pytest.mark.usefixtures("clean_settings")
def test_replaced_settings_llm_is_released_when_collected(real_serve: str, qvac_home: Path) -> None:
    first = qvac_llm(real_serve)
    assert first.lease is not None
    key = first.lease.fleet_key
    Settings.llm = first
    assert Settings.llm.complete("hi").text
    second = qvac_llm(real_serve)  # the same model set: it shares the serve and the marker
    Settings.llm = second
    assert not first.closed, "replacing Settings.llm must not close the old object"
    collected = weakref.ref(first)
    del first
    gc.collect()
    assert collected() is None
    assert len(markers(qvac_home, key)) == 1  # `second` still holds the serve
    assert Settings.llm.complete("hi").text
    Settings.llm = MockLLM()
    collected = weakref.ref(second)
    del second
    gc.collect()
    assert collected() is None
    assert markers(qvac_home, key) == []  # no holder remains: the lease was released
    wait_reaped(qvac_home)


# Exits without close(). The marker count is registered with atexit before any weakref.finalize
# exists, so it runs after their exit hook (atexit is last in, first out): it sees what is left.
AT_EXIT_SCRIPT = """
import atexit, json, sys, weakref
from qvac_managed_core import paths
assert not weakref.finalize._registered_with_atexit
def markers():
    folder = paths.consumers_dir(KEY)
    return len(list(folder.iterdir())) if folder.is_dir() else 0
atexit.register(lambda: print(json.dumps({"markers": markers()})))
from llama_index_qvac import QvacLLM
llm = QvacLLM(models=[json.loads(sys.argv[1])], max_tokens=16, serve_idle_timeout=0.5)
assert llm.complete("hi").text
KEY = llm.lease.fleet_key
print(json.dumps({"markers": markers()}))
"""


def test_unclosed_object_is_released_at_exit(real_serve: str, qvac_home: Path) -> None:
    spec = json.dumps(chat_spec(real_serve).model_dump(exclude_none=True))
    done = subprocess.run(
        [sys.executable, "-c", AT_EXIT_SCRIPT, spec], capture_output=True, text=True,
        timeout=180, env=dict(os.environ), check=True,
    )  # fmt: skip
    during, after = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert during == {"markers": 1}
    assert after == {"markers": 0}  # released by the object's finalizer at exit
    wait_reaped(qvac_home)


def test_from_dict_and_pickle_reattach_to_the_same_serve(real_serve: str, qvac_home: Path) -> None:
    llm = qvac_llm(real_serve)
    assert llm.lease is not None
    pid, key = llm.lease.pid, llm.lease.fleet_key
    data = llm.to_dict()
    assert "api_base" not in data and "api_key" not in data  # the lease's, not configuration
    copies = [QvacLLM.from_dict(data), pickle.loads(pickle.dumps(llm))]
    embedding = QvacEmbedding(models=[embed_spec(real_serve)], serve_idle_timeout=IDLE)
    assert embedding.lease is not None
    unpickled = pickle.loads(pickle.dumps(embedding))
    assert unpickled.lease is not None and unpickled.lease.pid == embedding.lease.pid
    llm.close()  # the copies hold their own share
    embedding.close()
    for again in copies:
        assert isinstance(again, QvacLLM) and again.lease is not None
        assert again.lease.pid == pid and again.lease.reused
        assert again.complete("hi").text
        assert (again.model, again.max_tokens, again.context_window) == ("gemma", 16, 2048)
    assert len(markers(qvac_home, key)) == 1
    assert unpickled.get_text_embedding("hi")
    for obj in (*copies, unpickled):
        obj.close()
    wait_reaped(qvac_home)


def test_two_processes_share_one_serve(real_serve: str, qvac_home: Path) -> None:
    llm = qvac_llm(real_serve)
    assert llm.lease is not None
    options = {"models": [chat_spec(real_serve).model_dump(exclude_none=True)],
               "serve_idle_timeout": IDLE}  # fmt: skip
    with Consumer(options) as other:
        assert other.info["pid"] == llm.lease.pid and other.info["reused"] is True
        assert other.send("chat") == {"status": 200, "pid": llm.lease.pid}
        assert llm.complete("hi").text
    llm.close()
    wait_reaped(qvac_home)


async def test_serve_killed_mid_session_next_call_still_answers(
    real_serve: str, qvac_home: Path
) -> None:
    llm = qvac_llm(real_serve)
    assert llm.lease is not None and llm.complete("hi").text
    first, generation = llm.lease.pid, llm.lease.generation
    kill_serve(first)
    assert llm.complete("hi").text
    second = llm.lease.pid
    assert second != first
    assert llm.lease.generation == generation + 1  # one re-resolve, by the lease's transport
    kill_serve(second)
    assert (await llm.achat(MESSAGES)).message.content
    assert llm.lease.pid not in (first, second)
    llm.close()
    wait_reaped(qvac_home)


def test_langchain_and_llama_index_adapters_share_one_serve(
    real_serve: str, qvac_home: Path
) -> None:
    llm = qvac_llm(real_serve)
    chat = ChatQvac(models=[chat_spec(real_serve)], max_tokens=16, serve_idle_timeout=IDLE)
    assert llm.lease is not None and chat.lease is not None
    assert chat.lease.pid == llm.lease.pid
    assert len(markers(qvac_home, llm.lease.fleet_key)) == 1
    assert llm.complete("hi").text and chat.invoke("hi").content
    llm.close()
    assert chat.invoke("hi").content  # closing one adapter leaves the other's share
    chat.close()
    wait_reaped(qvac_home)


def test_tools_without_tools_config_name_the_option(real_serve: str, qvac_home: Path) -> None:
    llm = qvac_llm(real_serve, is_function_calling_model=True, max_retries=0)

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    tool = FunctionTool.from_defaults(fn=add)
    with pytest.raises(openai.BadRequestError, match=r"config=\{'tools': True\}"):
        llm.chat_with_tools([tool], user_msg="What is 2 + 3?")
    llm.close()
    wait_reaped(qvac_home)
