"""Fleet keys: the name under which every process finds the serve for one model set.

The key is the first 16 hex digits of sha256 over a canonical JSON payload, written exactly as the
TypeScript `@qvac/ai-sdk-provider` writes it, so both share serves for the same constants.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Sequence
from typing import Any

from .models import ModelSpec

FLEET_PROTOCOL_VERSION = 2


def js_number(value: float) -> str:
    """A number as JavaScript's `Number.prototype.toString` writes it (ECMA-262 7.1.12.1)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(float(value))).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.<digits> * 10**n  (n as in the spec, after stripping leading zeros)
    n = len(whole) + int(exp or 0) if whole != "0" else int(exp or 0) - (len(frac) - len(digits))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + text


def js_json(value: Any) -> str:
    """`JSON.stringify(value)` as JavaScript writes it: no spaces, non-ASCII kept, 1.0 as 1."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value) if abs(value) < 2**53 else js_number(float(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("JSON has no NaN or Infinity")
        return js_number(value)
    if isinstance(value, dict):
        parts = [f"{json.dumps(k, ensure_ascii=False)}:{js_json(v)}" for k, v in value.items()]
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def stable_json(value: Any) -> str:
    """`js_json` with object keys sorted recursively (the TypeScript `stableStringify`)."""
    if isinstance(value, dict):
        parts = [
            f"{json.dumps(k, ensure_ascii=False)}:{stable_json(value[k])}" for k in sorted(value)
        ]
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(stable_json(v) for v in value) + "]"
    return js_json(value)


def fleet_key(
    specs: Sequence[ModelSpec],
    host: str = "127.0.0.1",
    serve_bin_path: str | None = None,
    serve_port: int | None = None,
) -> str:
    """The shared key for these models on this host; order-insensitive over the models.

    `serve_bin_path` is part of the key only when the caller passed one, and `serve_port` only
    when pinned; an auto-allocated port and the api key never are.
    """
    payload = {
        "protocolVersion": FLEET_PROTOCOL_VERSION,
        "host": host,
        "serveBinPath": serve_bin_path,
        "servePort": serve_port,
        "models": [[s.alias, stable_json(s.serve_entry())] for s in sorted(specs, key=_alias)],
    }
    return hashlib.sha256(js_json(payload).encode("utf-8")).hexdigest()[:16]


def private_key(shared_key: str) -> str:
    """A key no other caller will compute: for `reuse=False` or pinned-port serves."""
    return f"{shared_key}-priv-{os.getpid()}-{secrets.token_hex(4)}"


def _alias(spec: ModelSpec) -> str:
    return spec.alias
