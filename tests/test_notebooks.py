"""The example notebooks run top to bottom in a real kernel against the real serve, and the
committed files are exactly what `tools/make_notebooks.py` writes (no outputs).

The kernel (spec `python3`, run by this venv's python) gets QVAC_TEST_MODEL, so the notebooks'
first cell serves the local test GGUF under the QVAC constants' aliases.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.conftest import processes_of, stop_runners, wait_reaped
from tests.helpers.procs import load_tool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GENERATOR = ROOT / "tools" / "make_notebooks.py"
NOTEBOOKS = ["quickstart.ipynb", "rag_llamaindex.ipynb"]
SERVE_LINE = r"^started a new serve: pid (?P<pid>\d+) at http://127\.0\.0\.1:\d+/v1"
CLOSED_LINE = r"^closed: detached from serve (?P<pid>\d+); it is reaped 60 s after its last user$"
# What each notebook prints, line by line (regular expressions, in order).
EXPECTED = {
    "quickstart.ipynb": [
        r"^models: \['QWEN3_600M_INST_Q4 = .+\.gguf', 'EMBEDDINGGEMMA_300M_Q4_0 = .+\.gguf'\]$",
        SERVE_LINE + r", chat alias 'QWEN3_600M_INST_Q4'$",
        r"^answer: \S.*$",
        r"^streamed ([2-9]|\d\d+) pieces$",
        r"^async answer: .*$",
        r"^embedded 3 texts, [1-9]\d* dimensions each \(same serve: True\)$",
        CLOSED_LINE,
    ],
    "rag_llamaindex.ipynb": [
        r"^models: \['QWEN3_600M_INST_Q4 = .+\.gguf', 'EMBEDDINGGEMMA_300M_Q4_0 = .+\.gguf'\]$",
        SERVE_LINE + "$",
        r"^indexed 4 documents$",
        r"^answer: .*$",
        r"^retrieved: (?P<source>\w+\.txt) \(score -?\d+\.\d{3}\): (?P<text>.+)$",
        CLOSED_LINE,
    ],
}


def generator() -> ModuleType:
    return load_tool("make_notebooks")


def kernel_manager() -> KernelManager:
    """A manager for the `python3` kernel spec, run with exactly this venv's python."""
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv = [  # type: ignore[union-attr]
        sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
    ]  # fmt: skip
    return km


def stdout_of(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def test_committed_notebooks_are_generated_and_have_no_outputs() -> None:
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    switch = generator().MODELS_CELL
    for name in NOTEBOOKS:
        notebook = nbformat.read(EXAMPLES / name, as_version=4)  # type: ignore[no-untyped-call]
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.outputs == [] and cell.execution_count is None for cell in code), name
        assert code[0].source == switch, f"{name}: the first code cell is the model switch"
        assert [c for c in code if "QVAC_TEST_MODEL" in c.source] == [code[0]], name
        assert notebook.metadata.kernelspec.name == "python3"


def test_docs_show_the_notebooks_model_switch_cell() -> None:
    text = (ROOT / "docs" / "notebooks.md").read_text(encoding="utf-8")
    assert generator().MODELS_CELL in text


@pytest.mark.real_serve
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_a_real_kernel(
    name: str,
    real_serve: str,
    qvac_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    env = dict(os.environ)
    env.update(
        QVAC_HOME=str(qvac_home),
        QVAC_SERVE_BIN=os.environ["QVAC_SERVE_BIN"],  # the real CLI (the real_serve fixture)
        QVAC_TEST_MODEL=real_serve,
        QVAC_MANAGED_QUIET="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    notebook = nbformat.read(EXAMPLES / name, as_version=4)  # type: ignore[no-untyped-call]
    km = kernel_manager()
    client = NotebookClient(
        notebook,
        km=km,  # ours: nbclient leaves the kernel running after the last cell
        timeout=240,
        startup_timeout=60,
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    try:
        client.execute(env=env)  # raises CellExecutionError on the first cell that errors
        # The last cell closed everything: the kernel, still running, holds no marker, and the
        # serve outlives it (60 s idle timeout): closing detaches, it does not stop the serve.
        markers = list((qvac_home / "managed-serves").glob("*.consumers/*"))
        serves = [p.pid for p in processes_of(qvac_home) if "--openai" in p.cmdline()]
    finally:
        try:
            if km.has_kernel:
                km.shutdown_kernel(now=False)
        finally:
            stop_runners(qvac_home)
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []

    lines = stdout_of(notebook).splitlines()
    found: list[re.Match[str]] = []
    rest = iter(lines)  # each pattern matches a line after the previous pattern's line
    for pattern in EXPECTED[name]:
        match = next((m for line in rest if (m := re.match(pattern, line))), None)
        assert match is not None, f"{name}: no line matches {pattern!r} (in order) in:\n" + (
            "\n".join(lines)
        )
        found.append(match)
    started, closed = found[1], found[-1]
    assert started["pid"] == closed["pid"]
    assert serves == [int(started["pid"])], "one serve, the one the notebook started"
    assert markers == [], "the notebook closed its objects: no consumer marker may be left"
    if name == "rag_llamaindex.ipynb":  # the retrieved node is one of the documents, named right
        retrieved = found[4]
        source = "\n".join(cell.source for cell in notebook.cells)
        documents = dict(re.findall(r'Document\(text="([^"]+)",\s+metadata=\{"source": "([^"]+)"',
                                    source))  # fmt: skip
        assert len(documents) == 4
        assert documents.get(retrieved["text"]) == retrieved["source"], retrieved.group(0)
    wait_reaped(qvac_home)
