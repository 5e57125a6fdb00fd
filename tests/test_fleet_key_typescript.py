"""Our fleet keys equal the TypeScript provider 0.7.0's, computed by its own code under Node.

The provider is installed next to the CLI by `tools/provision.py` (tools/qvac-cli/package.json);
outside CI a machine without it skips, under CI=true it fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qvac_managed_core import ManagedModel, fleet_key, normalize_models
from tests.conftest import IN_CI

SCRIPT = """
const [base, casesJson] = process.argv.slice(1);  // node -e: no script path in argv
const { synthesizeServeConfig } = await import(base + '/dist/managed/config-synthesizer.js');
const { computeFleetKey } = await import(base + '/dist/managed/fleet-key.js');
const keys = JSON.parse(casesJson).map((c) =>
  computeFleetKey(synthesizeServeConfig(c.models), c.host, c.serveBinPath, c.servePort));
console.log(JSON.stringify(keys));
"""

# Numbers JavaScript prints differently from Python, non-ASCII, nesting, key order.
ODD_CONFIG: dict[str, Any] = {
    "temp": 1e-5,
    "min_p": 1e-7,
    "top_p": 0.1,
    "ctx_size": 4096.0,
    "big": 2.0**60,
    "seed": 42,
    "tools": True,
    "x": None,
    "name": "café ☕",
    "stop": ["\n", "</s>"],
    "nested": {"b": [1, {"z": 1, "a": 2}], "a": -0.5},
}
CASES: list[dict[str, Any]] = [
    {"models": ["QWEN3_600M_INST_Q4"]},
    {"models": ["QWEN3_600M_INST_Q4", "EMBEDDINGGEMMA_300M_Q4_0"]},
    {"models": ["EMBEDDINGGEMMA_300M_Q4_0", "QWEN3_600M_INST_Q4"]},
    {"models": ["EMBEDDINGGEMMA_300M_Q4_0", {"name": "QWEN3_600M_INST_Q4", "default": True}]},
    {"models": [{"name": "QWEN3_600M_INST_Q4", "preload": False}]},
    {"models": [{"name": "QWEN3_600M_INST_Q4", "config": {}}]},
    {"models": [{"name": "QWEN3_600M_INST_Q4", "config": ODD_CONFIG}]},
    {"models": ["QWEN3_600M_INST_Q4"], "host": "localhost"},
    {"models": ["QWEN3_600M_INST_Q4"], "servePort": 8080},
    {"models": ["QWEN3_600M_INST_Q4"], "serveBinPath": "/opt/qvac/bin/qvac"},
]


def provider_dir() -> Path | None:
    qvac = shutil.which("qvac")
    candidates = [
        Path.home() / ".cache/qvac-managed/qvac-cli/node_modules/@qvac/ai-sdk-provider",
    ]
    if qvac:
        candidates.append(Path(qvac).resolve().parents[2] / "ai-sdk-provider")
    return next((c for c in candidates if (c / "dist/managed/fleet-key.js").exists()), None)


def typescript_keys(cases: list[dict[str, Any]]) -> list[str]:
    base = provider_dir()
    if base is None or shutil.which("node") is None:
        message = "@qvac/ai-sdk-provider is not installed: run `python tools/provision.py --cli`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    payload = [{"host": "127.0.0.1", **c} for c in cases]
    done = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT, str(base), json.dumps(payload)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return list(json.loads(done.stdout))


def python_key(case: dict[str, Any]) -> str:
    models = [m if isinstance(m, str) else ManagedModel(**m) for m in case["models"]]
    return fleet_key(
        normalize_models(models),
        case.get("host", "127.0.0.1"),
        case.get("serveBinPath"),
        case.get("servePort"),
    )


def test_fleet_keys_equal_the_typescript_providers() -> None:
    expected = typescript_keys(CASES)
    assert expected[0] == "ff42c973b64d4f35"
    assert [python_key(c) for c in CASES] == expected
