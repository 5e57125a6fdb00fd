"""qvac_managed_core: shared, self-cleaning `qvac serve` processes for local QVAC models.

    from qvac_managed_core import acquire
    with acquire(models=["QWEN3_600M_INST_Q4"]) as lease:
        print(lease.base_url)

Names are imported lazily so `python -m qvac_managed_core.runner` starts without loading pydantic
or httpx.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        CliNotFoundError,
        DuplicateManagedModelError,
        InvalidManagedModelError,
        LeaseClosedError,
        ModelLoadError,
        MultipleDefaultManagedModelsError,
        PortAllocationFailedError,
        QvacManagedModeError,
        ServeExitedError,
        ServeSpawnFailedError,
        ServeStartTimeoutError,
        UnknownManagedModelError,
    )
    from .fleet import fleet_key
    from .lease import ServeLease, aacquire, acquire, build_plan
    from .models import ManagedModel, ModelSpec, normalize_models
    from .transport import AsyncServeTransport, ServeTransport

_EXPORTS = {
    "ManagedModel": "models",
    "ModelSpec": "models",
    "normalize_models": "models",
    "fleet_key": "fleet",
    "ServeLease": "lease",
    "acquire": "lease",
    "aacquire": "lease",
    "build_plan": "lease",
    "ServeTransport": "transport",
    "AsyncServeTransport": "transport",
    "QvacManagedModeError": "errors",
    "UnknownManagedModelError": "errors",
    "DuplicateManagedModelError": "errors",
    "MultipleDefaultManagedModelsError": "errors",
    "InvalidManagedModelError": "errors",
    "CliNotFoundError": "errors",
    "ServeSpawnFailedError": "errors",
    "ServeStartTimeoutError": "errors",
    "ServeExitedError": "errors",
    "ModelLoadError": "errors",
    "PortAllocationFailedError": "errors",
    "LeaseClosedError": "errors",
}

__all__ = [
    "AsyncServeTransport",
    "CliNotFoundError",
    "DuplicateManagedModelError",
    "InvalidManagedModelError",
    "LeaseClosedError",
    "ManagedModel",
    "ModelLoadError",
    "ModelSpec",
    "MultipleDefaultManagedModelsError",
    "PortAllocationFailedError",
    "QvacManagedModeError",
    "ServeExitedError",
    "ServeLease",
    "ServeSpawnFailedError",
    "ServeStartTimeoutError",
    "ServeTransport",
    "UnknownManagedModelError",
    "aacquire",
    "acquire",
    "build_plan",
    "fleet_key",
    "normalize_models",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
