"""The shipped catalog of QVAC model constants (`catalog.json`), loaded once on first use.

The JSON is generated from `tetherto-qvac-sdk` by `tools/generate_catalog.py`; the SDK itself is
never imported at run time because importing it costs about a second.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, cast


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Any]:
    """The parsed catalog: `models` (name -> engine, addon, sizeBytes), `engines`, aliases."""
    text = Path(__file__).with_name("catalog.json").read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))


def known_model(name: str) -> dict[str, Any] | None:
    """Catalog entry of a model constant, or None when the name is not a known constant."""
    entry = load_catalog()["models"].get(name)
    return cast("dict[str, Any] | None", entry)


def closest_models(name: str, limit: int = 3) -> list[str]:
    """Known constant names closest to `name`, for "did you mean" hints."""
    names = list(load_catalog()["models"])
    upper = name.upper().replace("-", "_")
    hits = difflib.get_close_matches(upper, names, n=limit, cutoff=0.6)
    if not hits:
        hits = [n for n in names if upper and upper in n][:limit]
    return hits


def engines() -> frozenset[str]:
    """Engine names the serve accepts as an explicit model `type`."""
    return frozenset(load_catalog()["engines"])


def engine_aliases() -> dict[str, str]:
    """Short engine aliases (e.g. `llm`) and the canonical engine each stands for."""
    return cast(dict[str, str], load_catalog()["engineAliases"])
