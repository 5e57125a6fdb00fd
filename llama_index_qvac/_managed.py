"""The glue QvacLLM and QvacEmbedding share: connecting at construction, holding the lease, and
serialization that re-runs construction (LlamaIndex's pickling and `from_dict` do).

Everything about serves (mode choice, validation, the lease, the transports) is in
`qvac_managed_core.connection`; this module only maps it onto LlamaIndex's OpenAI classes.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

from pydantic import (
    BaseModel,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from qvac_managed_core.connection import Connection, LeaseHolder, connect, is_managed, options_from

logger = logging.getLogger(__name__)

# In managed mode these come from the lease (its port and per-serve key), not from the caller:
# they are left out of dumps and pickles, so re-construction acquires again instead of failing.
LEASE_DERIVED_FIELDS = ("api_base", "api_key")
# A local model on a CPU can take minutes to answer; LlamaIndex's 60 s would time out and retry
# (re-running the generation). This is the OpenAI SDK's and so ChatQvac's default.
REQUEST_TIMEOUT = 600.0
# Clients that would bypass the lease's transport (which follows the live serve).
CLIENT_ARGS = ("http_client", "async_http_client", "openai_client", "async_openai_client")


def connect_args(data: dict[str, Any], model_key: str, embedding: bool) -> Connection:
    """Acquire (managed) or resolve (external) for constructor arguments `data`, and fill in the
    OpenAI client's arguments (model, api_base, api_key, http clients) from the connection.

    Also defaults `timeout` to `REQUEST_TIMEOUT` (the OpenAI classes' `__init__` says 60 s).
    """
    conn = connect(
        options_from(data),
        model=data.get(model_key) or None,
        base_url=data.get("api_base"),
        api_key=data.get("api_key"),
        embedding=embedding,
        custom_clients=[k for k in CLIENT_ARGS if data.get(k) is not None],
    )
    data.update({model_key: conn.model, "api_base": conn.base_url, "api_key": conn.api_key})
    if data.get("timeout") is None:
        data["timeout"] = REQUEST_TIMEOUT
    data["http_client"] = data.get("http_client") or conn.http_client()
    data["async_http_client"] = data.get("async_http_client") or conn.async_http_client()
    return conn


class LlamaIndexLeaseHolder(LeaseHolder):
    """The core's `LeaseHolder`, plus serialization that re-runs construction (LlamaIndex's
    pickling and `from_dict` do): the lease-derived fields are never saved."""

    # Every request of the OpenAI-like classes gets its client here: one choke point for the
    # closed check (and raising here keeps LlamaIndex's and OpenAI's retries out of it).
    def _get_client(self) -> Any:
        self._check_open()
        return super()._get_client()  # type: ignore[misc]

    def _get_aclient(self) -> Any:
        self._check_open()
        return super()._get_aclient()  # type: ignore[misc]

    # -- serialization: construction arguments only ---------------------------------------

    def _derived_fields(self) -> tuple[str, ...]:
        return LEASE_DERIVED_FIELDS if is_managed(self.managed, self.models) else ()

    @model_serializer(mode="wrap")
    def custom_model_dump(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        """LlamaIndex's dump (fields plus `class_name`), without the lease-derived fields."""
        data: dict[str, Any] = handler(self)
        for name in self._derived_fields():
            data.pop(name, None)
        data["class_name"] = type(self).class_name()  # type: ignore[attr-defined]
        return data

    def __getstate__(self) -> dict[Any, Any]:
        """The fields to re-construct from; the lease and clients are rebuilt, never pickled."""
        state = dict(BaseModel.__getstate__(self))
        fields: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in self._derived_fields():
                continue
            try:
                pickle.dumps(value)
            except Exception:  # LlamaIndex's BaseComponent drops these the same way
                logger.warning("Removing unpickleable attribute %s", key)
                continue
            fields[key] = value
        state["__dict__"] = fields
        state["__pydantic_private__"] = None
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        """Re-run construction: attach to (or start) the serve again, or raise why not."""
        self.__init__(**state["__dict__"])  # type: ignore[misc]
