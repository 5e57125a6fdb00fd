"""Model specs: what a caller may pass as `models=[...]`, its validation, and the serve config.

Everything here runs before anything is spawned, so every mistake surfaces as a typed error that
names the fix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .catalog import closest_models, engine_aliases, engines, known_model
from .errors import (
    DuplicateManagedModelError,
    InvalidManagedModelError,
    MultipleDefaultManagedModelsError,
    UnknownManagedModelError,
)

EMBEDDING_ENGINE = "llamacpp-embedding"
# Without "pooling" a local llama.cpp embedding GGUF returns one row per token and the same vector
# for every text (measured with CLI 0.13.1); mean pooling gives one meaningful vector per input.
DEFAULT_EMBEDDING_CONFIG: dict[str, Any] = {"pooling": "mean"}
_REMOTE_SRC_PREFIXES = ("registry://", "http://", "https://", "pear://", "hyperdrive://")


class ManagedModel(BaseModel):
    """One model to serve: a QVAC constant (`name` only) or a local file (`src` + `type`).

    `name` is the alias the serve exposes; `config` is passed to the engine as given (for example
    `{"ctx_size": 4096, "tools": True}`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    config: dict[Any, Any] | None = None  # checked as JSON by normalize_models, typed error
    preload: bool = True
    default: bool = False
    src: str | None = None
    type: str | None = None


ModelInput = str | ManagedModel | Mapping[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    """A validated model: its alias, what it loads, and the entry it gets in the serve config."""

    alias: str
    engine: str
    preload: bool
    default: bool
    config: dict[str, Any] = field(default_factory=dict)
    constant: str | None = None
    src: str | None = None
    has_config: bool = False
    """True when a config was given (even `{}`): it is then written, as TypeScript does."""

    @property
    def is_embedding(self) -> bool:
        """True for models served on /v1/embeddings rather than chat completions."""
        return self.engine == EMBEDDING_ENGINE

    @property
    def ctx_size(self) -> int | None:
        """The context window the config sets, if it sets one."""
        value = self.config.get("ctx_size")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def serve_entry(self) -> dict[str, Any]:
        """This model's entry under `serve.models` in `qvac.config.json` (also fleet-key input)."""
        entry: dict[str, Any] = {}
        if self.constant is not None:
            entry["model"] = self.constant
        else:
            entry["src"] = self.src
            entry["type"] = self.engine
        entry["preload"] = self.preload
        if self.default:
            entry["default"] = True
        if self.config or self.has_config:
            entry["config"] = self.config
        return entry


def _check_json(value: Any, where: str) -> None:
    """Raise unless `value` is plain JSON (finite numbers, string keys, no objects)."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidManagedModelError(
                f"{where} is {value!r}: JSON has no NaN or Infinity; use a finite number."
            )
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidManagedModelError(
                    f"{where} has the key {key!r}: JSON object keys must be strings."
                )
            _check_json(item, f"{where}.{key}")
        return
    raise InvalidManagedModelError(
        f"{where} is a {type(value).__name__}: model config must be plain JSON "
        "(dict, list, str, int, float, bool, None)."
    )


def _plain(value: Any) -> Any:
    """A JSON-clean copy (tuples to lists, mappings to dicts) so the spec is self-contained."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(item: ModelInput, index: int) -> ManagedModel:
    if isinstance(item, ManagedModel):
        return item
    if isinstance(item, str):
        return ManagedModel(name=item)
    if isinstance(item, Mapping):
        try:
            return ManagedModel.model_validate(dict(item))
        except ValidationError as exc:
            raise InvalidManagedModelError(
                f"models[{index}] is not a valid model spec: {exc.errors()[0]['msg']} "
                f"({exc.errors()[0]['loc']}). Allowed keys: name, config, preload, default, "
                "src, type."
            ) from None
    raise InvalidManagedModelError(
        f"models[{index}] is a {type(item).__name__}; pass a constant name (str), a "
        "ManagedModel, or a dict with the same fields."
    )


def _resolve_engine(model: ManagedModel) -> str:
    given = model.type
    if given is None:
        raise InvalidManagedModelError(
            f"Model {model.name!r} has a src but no type: add type='llamacpp-completion' "
            "(chat) or type='llamacpp-embedding' (embeddings)."
        )
    if given in engines():
        return given
    canonical = engine_aliases().get(given)
    hint = f" Did you mean {canonical!r}?" if canonical else ""
    raise InvalidManagedModelError(
        f"Model {model.name!r} has an unknown type {given!r}.{hint} Known types: "
        f"{', '.join(sorted(engines()))}."
    )


def _resolve_src(model: ManagedModel) -> str:
    src = model.src or ""
    if src.startswith(_REMOTE_SRC_PREFIXES):
        return src
    path = os.path.abspath(os.path.expanduser(src.removeprefix("file://")))
    if not os.path.isfile(path):
        raise InvalidManagedModelError(
            f"Model {model.name!r}: src {src!r} does not exist (looked for {path}). "
            "Give the path of a local model file."
        )
    return path


def _to_spec(model: ManagedModel) -> ModelSpec:
    if not model.name or not model.name.strip():
        raise InvalidManagedModelError("A model name (the alias it is served under) is empty.")
    has_config = model.config is not None
    config = model.config or {}
    _check_json(config, f"config of model {model.name!r}")
    config = _plain(config)
    if model.src is None:
        if model.type is not None:
            raise InvalidManagedModelError(
                f"Model {model.name!r} has a type but no src: type is only for local files; "
                "drop it, or add src='/path/model.gguf'."
            )
        entry = known_model(model.name)
        if entry is None:
            raise UnknownManagedModelError(model.name, closest_models(model.name))
        engine = str(entry["engine"])
        constant: str | None = model.name
        src = None
    else:
        engine = _resolve_engine(model)
        src = _resolve_src(model)
        constant = None
    if engine == EMBEDDING_ENGINE and constant is None:
        # A raw GGUF carries no serving defaults: without pooling it embeds per token. Constants
        # keep the entry TypeScript writes (same fleet key); a wrong shape is caught at run time.
        config = {**DEFAULT_EMBEDDING_CONFIG, **config}
    return ModelSpec(
        alias=model.name,
        engine=engine,
        preload=model.preload,
        default=model.default,
        config=config,
        constant=constant,
        src=src,
        has_config=has_config,
    )


def normalize_models(models: Sequence[ModelInput] | None) -> tuple[ModelSpec, ...]:
    """Validate `models` and return their specs, the default one marked.

    The first model is the default unless one says `default=True`.
    """
    if isinstance(models, (str, ManagedModel, Mapping)):
        models = [models]
    if not models:
        raise InvalidManagedModelError(
            "models is empty: pass at least one, e.g. models=['QWEN3_600M_INST_Q4']."
        )
    specs = [_to_spec(_coerce(item, i)) for i, item in enumerate(models)]
    seen: set[str] = set()
    for spec in specs:
        if spec.alias in seen:
            raise DuplicateManagedModelError(
                f"Two models are served as {spec.alias!r}: give one of them another name "
                f"(ManagedModel(name='other-alias', ...))."
            )
        seen.add(spec.alias)
    defaults = [s.alias for s in specs if s.default]
    if len(defaults) > 1:
        raise MultipleDefaultManagedModelsError(
            f"More than one model says default=True ({', '.join(defaults)}): keep it on one."
        )
    if not defaults:
        first = specs[0]
        specs[0] = ModelSpec(**{**first.__dict__, "default": True})
    return tuple(specs)


def default_alias(specs: Sequence[ModelSpec]) -> str:
    """The alias requests go to when they name no model."""
    return next(s.alias for s in specs if s.default)


def serve_config(specs: Sequence[ModelSpec]) -> dict[str, Any]:
    """The `qvac.config.json` document for these models."""
    return {"serve": {"models": {s.alias: s.serve_entry() for s in specs}}}
