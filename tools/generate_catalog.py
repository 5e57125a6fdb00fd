"""Regenerate `qvac_managed_core/catalog.json` from the installed `tetherto-qvac-sdk`.

    python tools/generate_catalog.py          # rewrite the file
    python tools/generate_catalog.py --check  # exit 1 if the file differs (drift)

The SDK is the official Python catalog of QVAC model constants, but importing it costs about a
second, so the package ships this JSON extract and never imports the SDK at run time.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent.parent / "qvac_managed_core" / "catalog.json"


def build_catalog() -> dict[str, Any]:
    """What catalog.json must hold for the installed SDK."""
    from tetherto.qvac_sdk._generated import model_type_maps, models_registry

    models: dict[str, dict[str, Any]] = {}
    for value in vars(models_registry).values():
        if isinstance(value, models_registry.ModelConstant):
            models[value.name] = {
                "engine": value.engine,
                "addon": value.addon,
                "sizeBytes": value.expected_size,
            }
    return {
        "source": f"tetherto-qvac-sdk {metadata.version('tetherto-qvac-sdk')}",
        "engines": sorted(model_type_maps.ENGINE_TO_ADDON),
        "engineAliases": dict(sorted(model_type_maps.ALIAS_TO_CANONICAL.items())),
        "models": dict(sorted(models.items())),
    }


def render(catalog: dict[str, Any]) -> str:
    return json.dumps(catalog, indent=1, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if catalog.json is stale")
    args = parser.parse_args()
    text = render(build_catalog())
    if args.check:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is stale: run python tools/generate_catalog.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
