"""Fleet keys and the JavaScript-compatible JSON they are computed over."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qvac_managed_core.fleet import fleet_key, js_json, private_key, stable_json
from qvac_managed_core.models import ManagedModel, normalize_models

CHAT = "QWEN3_600M_INST_Q4"
# The key @qvac/ai-sdk-provider 0.7.0 (TypeScript) computes for models: [CHAT] on 127.0.0.1.
TS_PROVIDER_KEY = "ff42c973b64d4f35"


def _compact(value: object) -> str:
    """What JSON.stringify gives for values without floats: no spaces, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _embedding_constant() -> str:
    from qvac_managed_core.catalog import load_catalog

    models = load_catalog()["models"]
    return next(n for n, e in models.items() if e["engine"] == "llamacpp-embedding")


# fleet_key ------------------------------------------------------------------------------------


def test_fleet_key_matches_the_typescript_provider() -> None:
    assert fleet_key(normalize_models([CHAT])) == TS_PROVIDER_KEY


def test_fleet_key_is_16_lowercase_hex_digits() -> None:
    key = fleet_key(normalize_models([CHAT]))
    assert len(key) == 16
    assert int(key, 16) >= 0
    assert key == key.lower()


def test_fleet_key_is_order_insensitive_when_the_default_is_explicit() -> None:
    other = _embedding_constant()
    default_first = normalize_models([ManagedModel(name=CHAT, default=True), other])
    default_last = normalize_models([other, ManagedModel(name=CHAT, default=True)])
    assert fleet_key(default_first) == fleet_key(default_last)


def test_fleet_key_changes_with_the_implicit_default() -> None:
    other = _embedding_constant()
    # Without an explicit default the first model is the default, so the order matters.
    assert fleet_key(normalize_models([CHAT, other])) != fleet_key(normalize_models([other, CHAT]))


def test_fleet_key_dict_input_equals_managed_model_input() -> None:
    as_model = normalize_models([ManagedModel(name=CHAT, config={"ctx_size": 4096})])
    as_dict = normalize_models([{"name": CHAT, "config": {"ctx_size": 4096}}])
    assert fleet_key(as_model) == fleet_key(as_dict)


def test_fleet_key_ignores_config_key_order() -> None:
    a = normalize_models([ManagedModel(name=CHAT, config={"ctx_size": 4096, "tools": True})])
    b = normalize_models([ManagedModel(name=CHAT, config={"tools": True, "ctx_size": 4096})])
    assert fleet_key(a) == fleet_key(b)


def test_fleet_key_changes_with_config() -> None:
    plain = normalize_models([CHAT])
    tuned = normalize_models([ManagedModel(name=CHAT, config={"ctx_size": 4096})])
    assert fleet_key(plain) != fleet_key(tuned)


def test_fleet_key_changes_with_host() -> None:
    specs = normalize_models([CHAT])
    assert fleet_key(specs, host="localhost") != fleet_key(specs)
    assert fleet_key(specs, host="127.0.0.1") == fleet_key(specs)


def test_fleet_key_changes_with_an_explicit_serve_bin_path() -> None:
    specs = normalize_models([CHAT])
    assert fleet_key(specs, serve_bin_path="/opt/qvac/bin/qvac") != fleet_key(specs)
    assert fleet_key(specs, serve_bin_path=None) == fleet_key(specs)


def test_fleet_key_changes_with_a_pinned_serve_port() -> None:
    specs = normalize_models([CHAT])
    assert fleet_key(specs, serve_port=18080) != fleet_key(specs)
    assert fleet_key(specs, serve_port=18080) != fleet_key(specs, serve_port=18081)
    assert fleet_key(specs, serve_port=None) == fleet_key(specs)


def test_fleet_key_of_a_local_file_uses_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    relative = ManagedModel(name="local", src="model.gguf", type="llamacpp-completion")
    absolute = ManagedModel(
        name="local",
        src=os.path.join(os.getcwd(), "model.gguf"),
        type="llamacpp-completion",
    )
    assert fleet_key(normalize_models([relative])) == fleet_key(normalize_models([absolute]))


# private_key ----------------------------------------------------------------------------------


def test_private_key_differs_on_every_call_and_extends_the_shared_key() -> None:
    shared = fleet_key(normalize_models([CHAT]))
    keys = [private_key(shared) for _ in range(20)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert key.startswith(shared + "-priv-")
        assert key != shared


# js_json / stable_json ------------------------------------------------------------------------


def test_js_json_writes_integral_floats_as_integers() -> None:
    assert js_json(1.0) == "1"
    assert js_json(-3.0) == "-3"
    assert js_json({"temperature": 1.0, "top_p": [0.0, 2.0]}) == _compact(
        {"temperature": 1, "top_p": [0, 2]}
    )


def test_js_json_keeps_non_integral_floats() -> None:
    assert js_json(0.5) == _compact(0.5)
    assert js_json([1.25, -2.5]) == _compact([1.25, -2.5])


def test_js_json_keeps_non_ascii_unescaped() -> None:
    text = "héllo wörld ✓ 模型"
    assert js_json(text) == '"' + text + '"'
    assert js_json({"ключ": text}) == _compact({"ключ": text})
    assert "\\u" not in js_json({"ключ": text})


def test_js_json_has_no_spaces() -> None:
    value = {"a": [1, 2, {"b": None, "c": True}], "d": "x"}
    out = js_json(value)
    assert out == _compact(value)
    assert " " not in out


def test_js_json_keeps_insertion_order() -> None:
    assert js_json({"b": 1, "a": 2}) == _compact({"b": 1, "a": 2})


def test_js_json_rejects_nan() -> None:
    with pytest.raises(ValueError):
        js_json(float("nan"))


@pytest.mark.parametrize(
    ("value", "javascript"),
    # Expected values are JSON.stringify(value) in Node (ECMAScript Number::toString).
    [(1e-5, "0.00001"), (1e-6, "0.000001"), (1e-7, "1e-7"), (2.0**60, "1152921504606847000")],
)
def test_js_json_formats_numbers_like_javascript(value: float, javascript: str) -> None:
    assert js_json(value) == javascript


def test_stable_json_sorts_keys_recursively() -> None:
    value = {"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": "é", "c": None}
    out = stable_json(value)
    assert out == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(out) == value


def test_stable_json_is_insensitive_to_insertion_order() -> None:
    assert stable_json({"b": 1, "a": {"d": 2, "c": 3}}) == stable_json(
        {"a": {"c": 3, "d": 2}, "b": 1}
    )


def test_stable_json_writes_integral_floats_as_integers() -> None:
    assert stable_json({"b": 2.0, "a": [1.0]}) == _compact({"a": [1], "b": 2})
