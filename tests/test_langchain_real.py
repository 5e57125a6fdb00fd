"""ChatQvac and QvacEmbeddings against the real serve, beyond the standard suites."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField
from langchain_core.tools import tool

from langchain_qvac import ChatQvac, QvacEmbeddings
from qvac_managed_core import InvalidManagedModelError, LeaseClosedError, ServeLease
from tests.conftest import chat_spec, gone, processes_of, shared_models, wait_for
from tests.helpers.procs import Consumer

pytestmark = pytest.mark.real_serve
PROMPT = ChatPromptTemplate.from_messages([("user", "Say something about {topic}.")])


def markers(lease: ServeLease) -> list[Path]:
    folder = Path(os.environ["QVAC_HOME"]) / "managed-serves" / f"{lease.fleet_key}.consumers"
    return list(folder.iterdir()) if folder.exists() else []


@pytest.fixture
def llm(shared_serve: ServeLease) -> Any:
    with ChatQvac(models=shared_models(), model="gemma", max_tokens=16, temperature=0) as model:
        yield model


def test_attaches_to_the_session_serve(llm: ChatQvac, shared_serve: ServeLease) -> None:
    assert llm.lease is not None
    assert llm.lease.pid == shared_serve.pid
    assert llm.openai_api_base == shared_serve.base_url
    assert llm._llm_type == "qvac-chat"
    assert llm._get_ls_params()["ls_provider"] == "qvac"


def test_chain_invoke_stream_and_astream(llm: ChatQvac) -> None:
    chain = PROMPT | llm | StrOutputParser()
    text = chain.invoke({"topic": "rivers"})
    assert isinstance(text, str) and text
    pieces = list(chain.stream({"topic": "rivers"}))
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)

    async def collect() -> list[str]:
        return [p async for p in chain.astream({"topic": "rivers"})]

    assert len(asyncio.run(collect())) > 1


def test_usage_metadata_in_invoke_and_stream(llm: ChatQvac) -> None:
    message = llm.invoke("Hello")
    assert message.usage_metadata and message.usage_metadata["output_tokens"] > 0
    total = None
    for chunk in llm.stream("Hello"):
        total = chunk if total is None else total + chunk
    assert total is not None and total.usage_metadata
    assert total.usage_metadata["output_tokens"] > 0


def test_batch_of_four_concurrently(llm: ChatQvac) -> None:
    results = llm.batch([f"Tell me about {t}" for t in ("cats", "dogs", "owls", "bees")])
    assert len(results) == 4
    assert all(isinstance(r.content, str) and r.content for r in results)


def test_stop_sequence_cuts_text_and_ends_stream(llm: ChatQvac) -> None:
    unstopped = llm.invoke("Count from one to ten: one, two,", max_tokens=24).content
    assert isinstance(unstopped, str)
    stop = next((ch for ch in unstopped[1:] if not ch.isspace()), None)
    assert stop, f"need a character to stop at in {unstopped!r}"
    message = llm.invoke("Count from one to ten: one, two,", max_tokens=24, stop=[stop])
    assert stop not in str(message.content)
    assert message.response_metadata["finish_reason"] == "stop"
    streamed = "".join(
        str(c.content)
        for c in llm.stream("Count from one to ten: one, two,", max_tokens=24, stop=[stop])
    )
    assert stop not in streamed
    assert streamed == message.content


def test_tools_without_config_get_an_error_naming_our_option(
    shared_serve: ServeLease, monkeypatch: pytest.MonkeyPatch
) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    plain = [{**shared_models()[0], "name": "gemma-plain", "config": {"ctx_size": 1024}}]
    with ChatQvac(models=plain, max_tokens=8, serve_idle_timeout=1) as no_tools:
        with pytest.raises(openai.BadRequestError) as info:
            no_tools.bind_tools([add]).invoke("What is 2 + 3?")
        assert "config={'tools': True}" in str(info.value)
        assert "ManagedModel(name='gemma-plain'" in str(info.value)


def test_tools_are_accepted_when_enabled(llm: ChatQvac) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    message = llm.bind_tools([add]).invoke("What is 2 + 3? Use the add tool.")
    assert message.response_metadata["finish_reason"] in ("stop", "length", "tool_calls")


def test_copies_share_the_lease_and_release_it_last(shared_serve: ServeLease) -> None:
    llm = ChatQvac(models=shared_models(), model="gemma", max_tokens=8)
    shared = llm.qvac_lease
    before = len(markers(shared_serve))
    bound = llm.bind_tools([]).bound
    assert bound is llm
    copy = llm.model_copy(update={"max_tokens": 4})
    assert copy.qvac_lease is shared and shared.holders == 2
    configurable = llm.configurable_fields(max_tokens=ConfigurableField(id="mt"))
    assert configurable.with_config(configurable={"mt": 4}).invoke("hi").content is not None
    gc.collect()
    assert shared.holders == 2  # the configured instance let go when collected
    assert len(markers(shared_serve)) == before  # no second acquire, no new marker
    llm.close()
    assert not copy.closed and not shared.lease.closed
    assert copy.invoke("hi").content is not None
    with pytest.raises(LeaseClosedError):
        llm.invoke("hi")
    copy.close()
    assert shared.lease.closed  # the last holder closed it


def test_model_not_served_is_an_error_at_construction(shared_serve: ServeLease) -> None:
    with pytest.raises(InvalidManagedModelError) as info:
        ChatQvac(models=shared_models(), model="nope")
    assert "gemma" in str(info.value) and "nope" in str(info.value)


def test_embed_documents_consistent_dimension(shared_serve: ServeLease) -> None:
    with QvacEmbeddings(models=shared_models()) as emb:
        assert emb.model == "gemma-embed"
        vectors = emb.embed_documents(["the cat sat", "quantum field theory", "a b c d e f"])
        assert len(vectors) == 3
        assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 8
        assert vectors[0] != vectors[1]
        assert len(emb.embed_query("the cat sat")) == len(vectors[0])


def test_two_processes_share_one_serve(real_serve: str, qvac_home: Path) -> None:
    models = [chat_spec(real_serve).model_dump(exclude_none=True)]
    with ChatQvac(models=models, max_tokens=8, serve_idle_timeout=0.5) as llm:
        assert llm.lease is not None
        with Consumer({"models": models, "serve_idle_timeout": 0.5}) as other:
            assert other.info["pid"] == llm.lease.pid
            assert other.info["reused"] is True
            assert llm.invoke("hi").content is not None
    wait_for(lambda: not processes_of(qvac_home), 30, "reap after both left")


def test_serve_killed_mid_session_next_invoke_answers(real_serve: str, qvac_home: Path) -> None:
    models = [chat_spec(real_serve).model_dump(exclude_none=True)]
    with ChatQvac(models=models, max_tokens=8, serve_idle_timeout=0.5) as llm:
        lease = llm.lease
        assert lease is not None
        assert llm.invoke("hi").content is not None
        old = lease.pid
        tree = [old] + [p.pid for p in psutil.Process(old).children(recursive=True)]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: all(gone(p) for p in tree), 10, "the killed serve's tree to exit")
        assert llm.invoke("hi again").content is not None
        assert lease.pid != old
    wait_for(lambda: not processes_of(qvac_home), 30, "reap after close")


def test_close_then_idle_reap(real_serve: str, qvac_home: Path) -> None:
    models = [chat_spec(real_serve).model_dump(exclude_none=True)]
    llm = ChatQvac(models=models, max_tokens=8, serve_idle_timeout=1.0)
    assert llm.lease is not None
    pid = llm.lease.pid
    assert llm.invoke("hi").content is not None
    closed_at = time.monotonic()
    llm.close()
    llm.close()  # idempotent
    wait_for(lambda: gone(pid), 30, "the serve to be reaped after the idle timeout")
    assert time.monotonic() - closed_at >= 1.0, "reaped before the idle timeout"
    wait_for(lambda: not processes_of(qvac_home), 10, "the runner to exit")
