"""Write the example notebooks, `examples/quickstart.ipynb` and `examples/rag_llamaindex.ipynb`.

    python tools/make_notebooks.py           # (re)write both notebooks
    python tools/make_notebooks.py --check   # exit 1 if a committed notebook differs from this

The notebooks are built here, not edited by hand, so they are reproducible: fixed cell ids, no
outputs, no execution counts. `tests/test_notebooks.py` runs them in a real kernel against the
real serve and checks that the committed files are what this script writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# The first code cell of both notebooks: the models by constant name, or a local GGUF file
# under the same aliases when QVAC_TEST_MODEL is set. docs/notebooks.md shows it verbatim.
MODELS_CELL = """\
import os

from qvac_managed_core import ManagedModel

CHAT_MODEL = "QWEN3_600M_INST_Q4"
EMBED_MODEL = "EMBEDDINGGEMMA_300M_Q4_0"

if os.environ.get("QVAC_TEST_MODEL"):  # a local GGUF file instead of the model registries
    local_file = os.environ["QVAC_TEST_MODEL"]
    CHAT_MODEL = ManagedModel(
        name="QWEN3_600M_INST_Q4",
        src=local_file,
        type="llamacpp-completion",
        config={"ctx_size": 2048},
    )
    EMBED_MODEL = ManagedModel(
        name="EMBEDDINGGEMMA_300M_Q4_0", src=local_file, type="llamacpp-embedding"
    )

MODELS = [CHAT_MODEL, EMBED_MODEL]  # one serve for both; the next notebook reuses it too
IDLE_TIMEOUT = 60  # seconds the serve outlives its last user (the default is 300)
print("models:", [m if isinstance(m, str) else f"{m.name} = {m.src}" for m in MODELS])"""

MODELS_MARKDOWN = """\
## The models

The models are named by QVAC constants: `QWEN3_600M_INST_Q4` chats and `EMBEDDINGGEMMA_300M_Q4_0`
embeds. The first start downloads them from the QVAC registries and can take a few minutes; later
starts reuse the download.

**No registries (offline, CI)?** Set the environment variable `QVAC_TEST_MODEL` to the path of a
local GGUF file *before starting Jupyter* (`QVAC_TEST_MODEL=/path/model.gguf jupyter lab`). The
next cell then serves that file under the same two aliases, as a chat model and as an embedding
model, so every later cell runs unchanged. That is how the repository's tests run this notebook,
with a 270M Gemma *base* model: its words mean little, but every request is real."""


def md(source: str) -> NotebookNode:
    """A markdown cell (its id is set by `_notebook`)."""
    return cast(NotebookNode, new_markdown_cell(source.strip("\n")))  # type: ignore[no-untyped-call]


def code(source: str) -> NotebookNode:
    """A code cell without outputs (its id is set by `_notebook`)."""
    return cast(NotebookNode, new_code_cell(source.strip("\n")))  # type: ignore[no-untyped-call]


def _notebook(slug: str, cells: list[NotebookNode]) -> NotebookNode:
    """A valid v4 notebook of `cells`, with ids `<slug>-<nn>` so diffs stay stable."""
    for number, cell in enumerate(cells, start=1):
        cell["id"] = f"{slug}-{number:02d}"
    metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                       "language": "python"},
        "language_info": {"name": "python"},
    }  # fmt: skip
    notebook = cast(NotebookNode, new_notebook(cells=cells, metadata=metadata))  # type: ignore[no-untyped-call]
    nbformat.validate(notebook)
    return notebook


def quickstart() -> NotebookNode:
    """LangChain: ChatQvac in a chain (invoke, stream, async) and QvacEmbeddings."""
    return _notebook(
        "quickstart",
        [
            md("""\
# Quickstart: a local QVAC model in LangChain

`ChatQvac` and `QvacEmbeddings` are LangChain models on a local QVAC model. Give them
`models=[...]` and they start a `qvac serve` for those models on a free loopback port — or attach
to one that another process (another notebook, a script, the TypeScript provider) already runs —
and keep it alive while they are used. Closing detaches; the serve is reaped once nobody has used
it for `serve_idle_timeout` seconds. Nothing to install or start by hand but the `qvac` CLI
(`npm i -g @qvac/cli`) and `pip install "qvac-managed[langchain]"`."""),
            md(MODELS_MARKDOWN),
            code(MODELS_CELL),
            md("""\
## A chat model

Constructing `ChatQvac` acquires the serve: the first time it starts one (progress is shown
below the cell while that takes more than a second), afterwards it attaches in milliseconds.
Re-running this cell attaches again to the same serve, and the replaced object lets go of it
when it is collected. Always give `max_tokens`: a small model may otherwise write until its
context is full. `stop` is cut by the library (the serve ignores it)."""),
            code("""\
from langchain_qvac import ChatQvac

llm = ChatQvac(
    models=MODELS,
    max_tokens=32,
    temperature=0,
    stop=["<|im_end|>"],
    serve_idle_timeout=IDLE_TIMEOUT,
)
lease = llm.lease
serve_pid = lease.pid
how = "attached to a running" if lease.reused else "started a new"
print(f"{how} serve: pid {serve_pid} at {lease.base_url}, chat alias {llm.model_name!r}")"""),
            md("""\
## A chain: prompt | llm | parser

`ChatQvac` is a regular LangChain chat model (it is built on `langchain-openai`), so it composes
with prompts and parsers; `invoke` returns the whole answer and `stream` yields it in pieces."""),
            code("""\
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

prompt = ChatPromptTemplate.from_messages([("user", "Tell me one fact about {topic}.")])
chain = prompt | llm | StrOutputParser()

answer = chain.invoke({"topic": "owls"})
print("answer:", answer.strip())"""),
            code("""\
pieces = []
for piece in chain.stream({"topic": "the moon"}):
    pieces.append(piece)
    print(piece, end="", flush=True)
print(f"\\nstreamed {len(pieces)} pieces")"""),
            md("""\
## Async

Jupyter runs cells in an event loop, so `await` works at the top level of a cell; the sync calls
above work in the same kernel too."""),
            code("""\
reply = await llm.ainvoke("Say hello in French.")
print("async answer:", reply.content.strip())"""),
            md("""\
## Embeddings

`QvacEmbeddings` with the same `models` uses the same serve (the serve is shared by model set),
and embeds with its embedding model."""),
            code("""\
from langchain_qvac import QvacEmbeddings

emb = QvacEmbeddings(models=MODELS, serve_idle_timeout=IDLE_TIMEOUT)
texts = ["Owls hunt at night.", "The moon orbits the Earth.", "Bread rises with yeast."]
vectors = emb.embed_documents(texts)
same = emb.lease.pid == serve_pid
print(f"embedded {len(vectors)} texts, {len(vectors[0])} dimensions each (same serve: {same})")"""),
            md("""\
## Close

`close()` only detaches: the serve keeps running for anyone else using it and is reaped
`serve_idle_timeout` seconds after its last user left. Restarting or shutting down the kernel
detaches too (see `docs/notebooks.md`)."""),
            code("""\
llm.close()
emb.close()
print(f"closed: detached from serve {serve_pid}; it is reaped {IDLE_TIMEOUT} s after its last user")
"""),
        ],
    )


def rag_llamaindex() -> NotebookNode:
    """LlamaIndex: QvacLLM and QvacEmbedding in Settings, a small index and a query engine."""
    return _notebook(
        "rag",
        [
            md("""\
# Retrieval with LlamaIndex on a local QVAC model

`QvacLLM` and `QvacEmbedding` are LlamaIndex models on a local QVAC model. Put them in
`Settings`, build a `VectorStoreIndex` over a few documents, and ask a question: the embedding
model picks the closest document and the chat model answers from it. Both start (or attach to)
one shared `qvac serve` and detach on `close()`. Install with
`pip install "qvac-managed[llama-index]"` and `npm i -g @qvac/cli`."""),
            md(MODELS_MARKDOWN),
            code(MODELS_CELL),
            md("""\
## The models in `Settings`

Both objects are given the same `models`, so they share one serve (started here if no process
runs it yet, with progress below the cell while the start takes more than a second)."""),
            code("""\
from llama_index.core import Settings
from llama_index_qvac import QvacEmbedding, QvacLLM

Settings.llm = QvacLLM(
    models=MODELS,
    max_tokens=32,
    temperature=0,
    additional_kwargs={"stop": ["<|im_end|>"]},  # cut by the library; the serve ignores stop
    serve_idle_timeout=IDLE_TIMEOUT,
)
Settings.embed_model = QvacEmbedding(models=MODELS, serve_idle_timeout=IDLE_TIMEOUT)
lease = Settings.llm.lease
serve_pid = lease.pid
how = "attached to a running" if lease.reused else "started a new"
print(f"{how} serve: pid {serve_pid} at {lease.base_url}")"""),
            md("## A small index\n\nFour one-line documents, each with its source name."),
            code("""\
from llama_index.core import Document, VectorStoreIndex

documents = [
    Document(text="The Rhine flows from the Swiss Alps to the North Sea.",
             metadata={"source": "rivers.txt"}),
    Document(text="Sourdough bread rises with wild yeast and lactic acid bacteria.",
             metadata={"source": "baking.txt"}),
    Document(text="Jupiter is the largest planet in the solar system.",
             metadata={"source": "planets.txt"}),
    Document(text="Owls hunt at night and can turn their heads by 270 degrees.",
             metadata={"source": "birds.txt"}),
]
index = VectorStoreIndex.from_documents(documents)
print(f"indexed {len(documents)} documents")"""),
            md("""\
## Ask

The query engine embeds the question, retrieves the closest document (`similarity_top_k=1`) and
has the chat model answer from it; `response.source_nodes` says what was retrieved."""),
            code("""\
query_engine = index.as_query_engine(similarity_top_k=1)
response = query_engine.query("Which planet is the largest?")
print("answer:", str(response).strip())

source = response.source_nodes[0]
print(f"retrieved: {source.node.metadata['source']} (score {source.score:.3f}): "
      f"{source.node.get_content()}")"""),
            md("""\
## Close

Closing detaches both objects; the serve is reaped `serve_idle_timeout` seconds after its last
user left (another notebook or process that needs the same models before then reuses it)."""),
            code("""\
Settings.llm.close()
Settings.embed_model.close()
print(f"closed: detached from serve {serve_pid}; it is reaped {IDLE_TIMEOUT} s after its last user")
"""),
        ],
    )


NOTEBOOKS = {"quickstart.ipynb": quickstart, "rag_llamaindex.ipynb": rag_llamaindex}


def render(notebook: NotebookNode) -> str:
    """The file text nbformat writes for `notebook` (what is committed)."""
    return cast(str, nbformat.writes(notebook)) + "\n"  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a diff")
    args = parser.parse_args(argv)
    stale = []
    for name, build in NOTEBOOKS.items():
        path = EXAMPLES / name
        text = render(build())
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date (run python tools/make_notebooks.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
