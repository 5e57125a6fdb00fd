"""Validation of `models=[...]` and the serve config it turns into."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from qvac_managed_core.catalog import engine_aliases, known_model, load_catalog
from qvac_managed_core.errors import (
    DuplicateManagedModelError,
    InvalidManagedModelError,
    MultipleDefaultManagedModelsError,
    QvacManagedModeError,
    UnknownManagedModelError,
)
from qvac_managed_core.models import (
    DEFAULT_EMBEDDING_CONFIG,
    EMBEDDING_ENGINE,
    ManagedModel,
    default_alias,
    normalize_models,
    serve_config,
)

CHAT = "QWEN3_600M_INST_Q4"
COMPLETION = "llamacpp-completion"


def _embedding_constant() -> str:
    models = load_catalog()["models"]
    return next(n for n, e in models.items() if e["engine"] == EMBEDDING_ENGINE)


def _raises_exactly(kind: type[Exception], models: Any) -> Exception:
    """Run normalize_models and return its error, which must be exactly of type `kind`."""
    with pytest.raises(QvacManagedModeError) as info:
        normalize_models(models)
    assert info.type is kind, f"expected {kind.__name__}, got {info.type.__name__}: {info.value}"
    return info.value


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


# Validation errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [[], (), None])
def test_empty_models_is_invalid_and_shows_an_example(empty: Any) -> None:
    err = _raises_exactly(InvalidManagedModelError, empty)
    assert "empty" in str(err)
    assert "models=['QWEN3_600M_INST_Q4']" in str(err)
    assert err.code == "INVALID_MANAGED_MODEL"


def test_unknown_constant_suggests_close_names() -> None:
    err = _raises_exactly(UnknownManagedModelError, ["QWEN3_600M_INST_Q5"])
    assert isinstance(err, UnknownManagedModelError)
    assert err.name == "QWEN3_600M_INST_Q5"
    assert err.suggestions[0] == CHAT
    assert f"Did you mean {CHAT}" in str(err)
    assert "src=" in str(err) and "type=" in str(err)  # names the local-file alternative
    assert err.code == "UNKNOWN_MANAGED_MODEL"
    assert isinstance(err, InvalidManagedModelError)


def test_unknown_constant_without_close_names_has_no_suggestion() -> None:
    err = _raises_exactly(UnknownManagedModelError, ["ZZZZZZZZZZ"])
    assert isinstance(err, UnknownManagedModelError)
    assert err.suggestions == []
    assert "Did you mean" not in str(err)


def test_duplicate_alias_is_rejected_with_a_rename_hint(gguf: Path) -> None:
    local = ManagedModel(name=CHAT, src=str(gguf), type=COMPLETION)
    err = _raises_exactly(DuplicateManagedModelError, [CHAT, local])
    assert repr(CHAT) in str(err)
    assert "another name" in str(err)
    assert err.code == "DUPLICATE_MANAGED_MODEL"


def test_two_defaults_are_rejected_naming_both() -> None:
    other = _embedding_constant()
    err = _raises_exactly(
        MultipleDefaultManagedModelsError,
        [ManagedModel(name=CHAT, default=True), ManagedModel(name=other, default=True)],
    )
    assert CHAT in str(err) and other in str(err)
    assert "keep it on one" in str(err)
    assert err.code == "MULTIPLE_DEFAULT_MANAGED_MODELS"


def test_src_without_type_names_the_types(gguf: Path) -> None:
    err = _raises_exactly(InvalidManagedModelError, [ManagedModel(name="local", src=str(gguf))])
    assert "no type" in str(err)
    assert f"type='{COMPLETION}'" in str(err)
    assert f"type='{EMBEDDING_ENGINE}'" in str(err)


def test_type_without_src_is_rejected() -> None:
    err = _raises_exactly(InvalidManagedModelError, [ManagedModel(name=CHAT, type=COMPLETION)])
    assert "no src" in str(err)
    assert "src=" in str(err)


def test_unknown_type_lists_the_known_types(gguf: Path) -> None:
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name="local", src=str(gguf), type="no-such")]
    )
    assert "unknown type 'no-such'" in str(err)
    assert COMPLETION in str(err) and EMBEDDING_ENGINE in str(err)
    assert "Did you mean" not in str(err)


@pytest.mark.parametrize("alias", ["llm", "embeddings"])
def test_alias_type_suggests_the_canonical_engine(gguf: Path, alias: str) -> None:
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name="local", src=str(gguf), type=alias)]
    )
    assert f"Did you mean {engine_aliases()[alias]!r}?" in str(err)


def test_llm_type_suggests_llamacpp_completion(gguf: Path) -> None:
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name="local", src=str(gguf), type="llm")]
    )
    assert "Did you mean 'llamacpp-completion'?" in str(err)


def test_missing_src_file_is_rejected_with_the_path_looked_for(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name="local", src=str(missing), type=COMPLETION)]
    )
    assert "does not exist" in str(err)
    assert str(missing) in str(err)
    assert "local model file" in str(err)


def test_a_directory_is_not_a_model_file(tmp_path: Path) -> None:
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name="local", src=str(tmp_path), type=COMPLETION)]
    )
    assert "does not exist" in str(err)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_config_with_non_finite_number_is_rejected(bad: float) -> None:
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name=CHAT, config={"temp": {"x": [bad]}})]
    )
    assert "temp.x[0]" in str(err)
    assert "no NaN or Infinity" in str(err)
    assert "finite number" in str(err)


def test_config_with_a_nested_non_string_key_is_rejected() -> None:
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name=CHAT, config={"stop": {1: "x"}})]
    )
    assert "key 1" in str(err)
    assert "keys must be strings" in str(err)


def test_dict_config_with_a_top_level_non_string_key_says_keys_must_be_strings() -> None:
    err = _raises_exactly(InvalidManagedModelError, [{"name": CHAT, "config": {1: "x"}}])
    assert "keys must be strings" in str(err)


def test_config_with_an_object_is_rejected() -> None:
    err = _raises_exactly(
        InvalidManagedModelError, [ManagedModel(name=CHAT, config={"obj": object()})]
    )
    assert "is a object" in str(err)
    assert "plain JSON" in str(err)


def test_dict_with_an_unknown_key_lists_the_allowed_keys() -> None:
    err = _raises_exactly(InvalidManagedModelError, [{"name": CHAT, "pooling": "mean"}])
    assert "models[0]" in str(err)
    assert "pooling" in str(err)
    assert "Allowed keys: name, config, preload, default, src, type" in str(err)


def test_dict_without_a_name_is_invalid() -> None:
    err = _raises_exactly(InvalidManagedModelError, [CHAT, {"config": {}}])
    assert "models[1]" in str(err)
    assert "name" in str(err)


def test_an_item_of_the_wrong_type_is_invalid() -> None:
    err = _raises_exactly(InvalidManagedModelError, [CHAT, 42])
    assert "models[1] is a int" in str(err)
    assert "constant name" in str(err)


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_name_is_invalid(name: str) -> None:
    err = _raises_exactly(InvalidManagedModelError, [name])
    assert "empty" in str(err)


# Normalization --------------------------------------------------------------------------------


def test_dict_input_is_equivalent_to_managed_model(gguf: Path) -> None:
    fields: dict[str, Any] = {
        "name": "local",
        "src": str(gguf),
        "type": COMPLETION,
        "config": {"ctx_size": 2048},
        "preload": False,
    }
    assert normalize_models([fields]) == normalize_models([ManagedModel(**fields)])
    assert normalize_models([{"name": CHAT}]) == normalize_models([ManagedModel(name=CHAT)])
    assert normalize_models([CHAT]) == normalize_models([ManagedModel(name=CHAT)])


def test_a_single_model_need_not_be_in_a_list() -> None:
    assert normalize_models(CHAT) == normalize_models([CHAT])  # type: ignore[arg-type]
    assert normalize_models({"name": CHAT}) == normalize_models([CHAT])  # type: ignore[arg-type]


def test_the_first_model_becomes_the_default() -> None:
    other = _embedding_constant()
    specs = normalize_models([CHAT, other])
    assert [s.default for s in specs] == [True, False]
    assert default_alias(specs) == CHAT


def test_an_explicit_default_wins_over_the_first() -> None:
    other = _embedding_constant()
    specs = normalize_models([CHAT, ManagedModel(name=other, default=True)])
    assert [s.default for s in specs] == [False, True]
    assert default_alias(specs) == other


def test_constant_spec_takes_its_engine_from_the_catalog() -> None:
    (spec,) = normalize_models([CHAT])
    entry = known_model(CHAT)
    assert entry is not None
    assert spec.constant == CHAT
    assert spec.src is None
    assert spec.engine == entry["engine"]


def test_serve_config_of_a_constant() -> None:
    assert serve_config(normalize_models([CHAT])) == {
        "serve": {"models": {CHAT: {"model": CHAT, "preload": True, "default": True}}}
    }


def test_serve_config_of_a_constant_with_config_and_no_preload() -> None:
    other = _embedding_constant()
    specs = normalize_models(
        [ManagedModel(name=CHAT, config={"ctx_size": 4096}), ManagedModel(name=other)]
    )
    models = serve_config(specs)["serve"]["models"]
    assert models[CHAT] == {
        "model": CHAT,
        "preload": True,
        "default": True,
        "config": {"ctx_size": 4096},
    }
    assert "default" not in models[other]
    lazy = normalize_models([ManagedModel(name=CHAT, preload=False)])
    assert serve_config(lazy)["serve"]["models"][CHAT]["preload"] is False


def test_serve_config_of_a_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    specs = normalize_models([ManagedModel(name="local", src="model.gguf", type=COMPLETION)])
    assert serve_config(specs) == {
        "serve": {
            "models": {
                "local": {
                    "src": os.path.join(os.getcwd(), "model.gguf"),
                    "type": COMPLETION,
                    "preload": True,
                    "default": True,
                }
            }
        }
    }
    assert specs[0].constant is None


def test_file_url_src_resolves_to_the_path(gguf: Path) -> None:
    (spec,) = normalize_models([ManagedModel(name="local", src=f"file://{gguf}", type=COMPLETION)])
    assert spec.src == os.path.abspath(gguf)


def test_remote_src_is_kept_as_given() -> None:
    src = "https://example.invalid/model.gguf"
    (spec,) = normalize_models([ManagedModel(name="remote", src=src, type=COMPLETION)])
    assert spec.src == src


def test_embedding_file_gets_mean_pooling(gguf: Path) -> None:
    (spec,) = normalize_models([ManagedModel(name="emb", src=str(gguf), type=EMBEDDING_ENGINE)])
    assert spec.is_embedding
    assert spec.config["pooling"] == DEFAULT_EMBEDDING_CONFIG["pooling"] == "mean"
    assert spec.serve_entry()["config"] == {"pooling": "mean"}


def test_embedding_constant_keeps_the_typescript_entry() -> None:
    # The catalog knows a constant's engine and the SDK its defaults; only a raw GGUF (src) gets
    # our pooling default, so constant-only sets keep the TypeScript provider's fleet key.
    (spec,) = normalize_models(["EMBEDDINGGEMMA_300M_Q4_0"])
    assert spec.is_embedding
    assert spec.config == {}
    assert "config" not in spec.serve_entry()


def test_user_pooling_wins_and_other_config_is_kept(gguf: Path) -> None:
    (spec,) = normalize_models(
        [
            ManagedModel(
                name="emb",
                src=str(gguf),
                type=EMBEDDING_ENGINE,
                config={"pooling": "cls", "ctx_size": 512},
            )
        ]
    )
    assert spec.config == {"pooling": "cls", "ctx_size": 512}


def test_chat_models_are_not_embedding_and_get_no_pooling() -> None:
    (spec,) = normalize_models([CHAT])
    assert not spec.is_embedding
    assert "pooling" not in spec.config


@pytest.mark.parametrize(
    ("config", "expected"),
    [({"ctx_size": 4096}, 4096), ({}, None), ({"ctx_size": True}, None), ({"ctx_size": "1"}, None)],
)
def test_ctx_size_is_the_integer_config_value(config: dict[str, Any], expected: int | None) -> None:
    (spec,) = normalize_models([ManagedModel(name=CHAT, config=config)])
    assert spec.ctx_size == expected


def test_spec_config_is_a_copy_of_the_callers_config() -> None:
    config: dict[str, Any] = {"stop": ["a"], "nested": {"k": 1}}
    (spec,) = normalize_models([{"name": CHAT, "config": config}])
    config["stop"].append("b")
    config["nested"]["k"] = 2
    assert spec.config == {"stop": ["a"], "nested": {"k": 1}}


def test_tuples_in_config_become_lists() -> None:
    (spec,) = normalize_models([ManagedModel(name=CHAT, config={"stop": ("a", ("b",))})])
    assert spec.config == {"stop": ["a", ["b"]]}
