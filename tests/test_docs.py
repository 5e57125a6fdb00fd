"""Every code block in README.md and docs/ runs, or is marked `<!-- not-run: reason -->`.

Python blocks run each in a fresh interpreter against the real serve. The docs name QVAC model
constants (what a user with the public registries writes); these machines cannot download them,
so the block's constant names inside `models=[...]` are swapped for the local test GGUF served
under the same alias. A block marked `<!-- run: as-is -->` runs without the swap. JSON blocks must
parse. All blocks of the suite share one registry, so identical model sets reuse one serve.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import stop_runners

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*(not-run|run):?\s*(.*?)\s*-->\s*$")
CONSTANTS = {"QWEN3_600M_INST_Q4": "llamacpp-completion",
             "EMBEDDINGGEMMA_300M_Q4_0": "llamacpp-embedding"}  # fmt: skip
PREAMBLE = """
import os as _os
from qvac_managed_core import ManagedModel as _MM
def _local(name):
    kind = {kinds!r}[name]
    config = {{"ctx_size": 2048}} if kind == "llamacpp-completion" else None
    return _MM(name=name, src=_os.environ["QVAC_TEST_MODEL"], type=kind, config=config)
"""


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    marker: tuple[str, str] | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").splitlines()
            mark = MARKER.search(before[-1]) if before else None
            found.append(
                Block(
                    path=path,
                    line=text[: match.start()].count("\n") + 1,
                    lang=match.group(1),
                    code=match.group(2),
                    marker=(mark.group(1), mark.group(2)) if mark else None,
                )
            )
    return found


ALL_BLOCKS = blocks()


def localize(code: str) -> str:
    names = "|".join(CONSTANTS)
    return re.sub(rf'(?<!model=)"({names})"', r'_local("\1")', code)


@pytest.fixture(scope="module")
def docs_env(
    serve_bin: str, gguf_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("docs-home")
    env = dict(os.environ)
    env.update(QVAC_HOME=str(home), QVAC_SERVE_BIN=serve_bin, QVAC_TEST_MODEL=gguf_model,
               QVAC_MANAGED_QUIET="1", PYTHONPATH=str(ROOT))  # fmt: skip
    yield env
    stop_runners(home)


def test_docs_have_code_blocks() -> None:
    assert len(ALL_BLOCKS) >= 10
    assert any(b.lang == "python" and b.marker is None for b in ALL_BLOCKS)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.id)
def test_code_block(block: Block, request: pytest.FixtureRequest) -> None:
    if block.marker and block.marker[0] == "not-run":
        assert block.marker[1], f"{block.id}: a not-run block must say why"
        pytest.skip(f"not run: {block.marker[1]}")
    if block.lang == "json":
        json.loads(block.code)
        return
    assert block.lang == "python", f"{block.id}: a {block.lang or 'plain'} block must be marked"
    env = request.getfixturevalue("docs_env")
    code = block.code
    if not (block.marker and block.marker[0] == "run" and block.marker[1] == "as-is"):
        code = PREAMBLE.format(kinds=CONSTANTS) + localize(code)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"
