"""The shipped catalog of model constants, and its drift against the installed SDK."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qvac_managed_core.catalog import (
    closest_models,
    engine_aliases,
    engines,
    known_model,
    load_catalog,
)
from tests.helpers.procs import load_tool

REPO = Path(__file__).resolve().parents[2]
CHAT = "QWEN3_600M_INST_Q4"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """tools/generate_catalog.py, imported from its file (tools/ is not a package)."""
    return load_tool("generate_catalog")


@pytest.fixture(scope="module")
def built(generator: ModuleType) -> dict[str, Any]:
    """What the generator makes of the installed tetherto-qvac-sdk (importing it takes ~1 s)."""
    catalog: dict[str, Any] = generator.build_catalog()
    return catalog


def _shipped_text() -> str:
    package = resources.files("qvac_managed_core")
    return package.joinpath("catalog.json").read_text(encoding="utf-8")


def test_shipped_catalog_matches_the_installed_sdk(built: dict[str, Any]) -> None:
    assert built == json.loads(_shipped_text())


def test_shipped_catalog_is_rendered_as_the_generator_writes_it(
    generator: ModuleType, built: dict[str, Any]
) -> None:
    assert generator.render(built) == _shipped_text()
    assert generator.TARGET == REPO / "qvac_managed_core" / "catalog.json"


def test_load_catalog_is_the_shipped_file() -> None:
    assert load_catalog() == json.loads(_shipped_text())


def test_known_model_returns_the_catalog_entry(built: dict[str, Any]) -> None:
    entry = known_model(CHAT)
    assert entry == built["models"][CHAT]
    assert entry is not None and entry["engine"] == "llamacpp-completion"


@pytest.mark.parametrize("name", ["NO_SUCH_MODEL", CHAT.lower(), "", " " + CHAT])
def test_known_model_is_none_for_anything_but_an_exact_constant(name: str) -> None:
    assert known_model(name) is None


def test_every_catalog_engine_is_a_known_engine() -> None:
    models = load_catalog()["models"]
    assert {entry["engine"] for entry in models.values()} <= engines()
    assert set(engine_aliases().values()) <= engines()


def test_engine_alias_llm_is_llamacpp_completion() -> None:
    assert engine_aliases()["llm"] == "llamacpp-completion"
    assert {"llamacpp-completion", "llamacpp-embedding"} <= engines()


def test_closest_models_puts_the_near_miss_first() -> None:
    hits = closest_models("QWEN3_600M_INST_Q5")
    assert hits[0] == CHAT
    assert 1 <= len(hits) <= 3


@pytest.mark.parametrize(
    "typed", ["qwen3_600m_inst_q4", "qwen3-600m-inst-q4", "Qwen3-600M-Inst-Q4"]
)
def test_closest_models_ignores_case_and_dashes(typed: str) -> None:
    assert closest_models(typed)[0] == CHAT


def test_closest_models_respects_the_limit() -> None:
    assert len(closest_models("QWEN3_600M_INST_Q5", limit=1)) == 1
    assert len(closest_models("QWEN3_600M_INST_Q5", limit=5)) <= 5


def test_closest_models_falls_back_to_substring_matches() -> None:
    # "gemma" is too short to be close to any full name, but several names contain it.
    names = list(load_catalog()["models"])
    hits = closest_models("gemma")
    assert 1 <= len(hits) <= 3
    assert all("GEMMA" in hit and hit in names for hit in hits)
    assert hits == sorted(hits)  # in catalog order


def test_closest_models_are_known_constants() -> None:
    for hit in closest_models("EMBEDDINGGEMMA") + closest_models("QWEN3_600M_INST_Q5"):
        assert known_model(hit) is not None


@pytest.mark.parametrize("name", ["ZZZZZZZZZZ", ""])
def test_closest_models_is_empty_when_nothing_is_close(name: str) -> None:
    assert closest_models(name) == []
