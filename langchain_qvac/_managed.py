"""The managed-mode glue ChatQvac and QvacEmbeddings share: filling the OpenAI client's fields
from a `qvac_managed_core` connection, and holding (and releasing) its lease."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from pydantic import PrivateAttr, model_validator

from qvac_managed_core import InvalidManagedModelError, ServeLease
from qvac_managed_core.connection import LeaseHold, ManagedServeOptions, SharedLease, connect

OPTION_FIELDS = tuple(ManagedServeOptions.model_fields)


def fill_connection(values: Any, embedding: bool) -> Any:
    """Before validation: acquire (managed) or resolve (external), and fill the client fields.

    Values that already carry a lease (LangChain re-constructing a copy) attach to it instead.
    """
    if not isinstance(values, dict) or values.get("qvac_lease") is not None:
        return values
    options = ManagedServeOptions.model_validate(
        {k: values[k] for k in OPTION_FIELDS if values.get(k) is not None}
    )
    base_url = values.get("base_url") or values.get("openai_api_base")
    api_key = values.get("api_key") or values.get("openai_api_key")
    if api_key is not None and hasattr(api_key, "get_secret_value"):
        api_key = api_key.get_secret_value()
    model = values.get("model") or values.get("model_name")
    if options.models and (values.get("http_client") or values.get("http_async_client")):
        raise InvalidManagedModelError(
            "http_client/http_async_client cannot be set in managed mode: requests must go "
            "through the lease's transport, which follows the live serve."
        )
    conn = connect(options, model=model, base_url=base_url, api_key=api_key, embedding=embedding)
    for name in ("base_url", "openai_api_base", "api_key", "openai_api_key", "model_name"):
        values.pop(name, None)
    values.update(
        model=conn.model,
        base_url=conn.base_url,
        api_key=conn.api_key,
        qvac_lease=conn.shared,
    )
    if conn.shared is not None or not values.get("http_client"):
        values["http_client"] = conn.http_client()
    if conn.shared is not None or not values.get("http_async_client"):
        values["http_async_client"] = conn.async_http_client()
    return values


class LeaseHolderMixin:
    """close(), context managers and copy-sharing of the lease, for a pydantic adapter class."""

    qvac_lease: Any
    _hold: LeaseHold | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _hold_qvac_lease(self) -> Any:
        shared = self.qvac_lease
        if isinstance(shared, SharedLease):
            self._hold = shared.hold(self)
        return self

    @property
    def lease(self) -> ServeLease | None:
        """The managed serve's lease (None in external mode)."""
        shared = self.qvac_lease
        return shared.lease if isinstance(shared, SharedLease) else None

    @property
    def closed(self) -> bool:
        return self._hold is not None and self._hold.released

    def _check_open(self) -> None:
        if self._hold is not None:
            self._hold.check_open()

    def close(self) -> None:
        """Release this object's share of the lease (idempotent); the serve itself is reaped
        by its runner once nobody uses it for the idle timeout."""
        if self._hold is not None:
            self._hold.release()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __copy__(self) -> Any:
        new = super().__copy__()  # type: ignore[misc]
        shared = self.qvac_lease
        if isinstance(shared, SharedLease):
            new._hold = shared.hold(new)
        return new

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        new = super().__deepcopy__(memo)  # type: ignore[misc]
        shared = self.qvac_lease
        if isinstance(shared, SharedLease):
            new._hold = shared.hold(new)
        return new
