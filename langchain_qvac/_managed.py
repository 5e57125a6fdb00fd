"""What ChatQvac and QvacEmbeddings add to the core's connection: filling langchain-openai's
client fields from it, and carrying the lease in a field so LangChain's re-constructions
(`configurable_fields`) attach to it instead of acquiring again."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from qvac_managed_core.connection import LeaseHolder, SharedLease, connect, options_from

CLIENT_ARGS = ("http_client", "http_async_client")


def fill_connection(values: dict[str, Any], embedding: bool) -> dict[str, Any]:
    """Acquire (managed) or resolve (external), and fill the OpenAI client fields.

    Values that already carry a lease (LangChain re-constructing a copy) are used as they are.
    """
    if values.get("qvac_lease") is not None:
        return values
    api_key = values.pop("api_key", None) or values.pop("openai_api_key", None)
    if api_key is not None and hasattr(api_key, "get_secret_value"):
        api_key = api_key.get_secret_value()
    conn = connect(
        options_from(values),
        model=values.pop("model", None) or values.pop("model_name", None),
        base_url=values.pop("base_url", None) or values.pop("openai_api_base", None),
        api_key=api_key,
        embedding=embedding,
        custom_clients=[k for k in CLIENT_ARGS if values.get(k) is not None],
    )
    values.update(model=conn.model, base_url=conn.base_url, api_key=conn.api_key)
    values["qvac_lease"] = conn.shared
    values["http_client"] = values.get("http_client") or conn.http_client()
    values["http_async_client"] = values.get("http_async_client") or conn.async_http_client()
    return values


class LangChainLeaseHolder(LeaseHolder):
    """The core's `LeaseHolder`, attached from the `qvac_lease` field after validation."""

    qvac_lease: Any

    @model_validator(mode="after")
    def _attach_qvac_lease(self) -> Any:
        shared = self.qvac_lease
        self._attach(shared if isinstance(shared, SharedLease) else None)
        return self
