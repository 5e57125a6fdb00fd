"""Typed errors of managed mode; each has a stable `.code` and a message that names the fix."""

from __future__ import annotations


class QvacManagedModeError(RuntimeError):
    """Base of every managed-mode error; `code` is stable across releases, the text is not."""

    code = "QVAC_MANAGED_ERROR"


class InvalidManagedModelError(QvacManagedModeError, ValueError):
    """A model spec is malformed (empty list, bad src/type, config that is not JSON)."""

    code = "INVALID_MANAGED_MODEL"


class UnknownManagedModelError(InvalidManagedModelError):
    """A bare model name is not a known QVAC model constant."""

    code = "UNKNOWN_MANAGED_MODEL"

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(
            f"Unknown QVAC model constant {name!r}.{hint} For a local file use "
            f"ManagedModel(name=..., src='/path/model.gguf', type='llamacpp-completion')."
        )


class DuplicateManagedModelError(InvalidManagedModelError):
    """Two models would be served under the same alias."""

    code = "DUPLICATE_MANAGED_MODEL"


class MultipleDefaultManagedModelsError(InvalidManagedModelError):
    """More than one model says `default=True`."""

    code = "MULTIPLE_DEFAULT_MANAGED_MODELS"


class CliNotFoundError(QvacManagedModeError, FileNotFoundError):
    """The `qvac` executable could not be found."""

    code = "QVAC_CLI_NOT_FOUND"


class ServeSpawnFailedError(QvacManagedModeError):
    """The runner or the serve process could not be started at all."""

    code = "SERVE_SPAWN_FAILED"


class ServeStartTimeoutError(QvacManagedModeError, TimeoutError):
    """The serve did not become healthy within `serve_start_timeout`."""

    code = "SERVE_START_TIMEOUT"


class ServeExitedError(QvacManagedModeError):
    """The serve exited while starting; carries its exit code or signal and its log tail."""

    code = "SERVE_EXITED"

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        log_tail: str = "",
    ) -> None:
        self.exit_code = exit_code
        self.signal = signal
        self.log_tail = log_tail
        super().__init__(message)


class ModelLoadError(QvacManagedModeError):
    """The serve listens, but a preloaded model reports `state: error`."""

    code = "MODEL_LOAD_ERROR"

    def __init__(self, message: str, *, aliases: list[str], log_tail: str = "") -> None:
        self.aliases = aliases
        self.log_tail = log_tail
        super().__init__(message)


class PortAllocationFailedError(QvacManagedModeError):
    """No free loopback port could be had, or the pinned one is taken."""

    code = "PORT_ALLOCATION_FAILED"


class LeaseClosedError(QvacManagedModeError):
    """The lease was closed; create a new model object (or call acquire) to get a serve again."""

    code = "LEASE_CLOSED"


ERRORS_BY_CODE: dict[str, type[QvacManagedModeError]] = {
    cls.code: cls
    for cls in (
        QvacManagedModeError,
        InvalidManagedModelError,
        UnknownManagedModelError,
        DuplicateManagedModelError,
        MultipleDefaultManagedModelsError,
        CliNotFoundError,
        ServeSpawnFailedError,
        ServeStartTimeoutError,
        ServeExitedError,
        ModelLoadError,
        PortAllocationFailedError,
        LeaseClosedError,
    )
}
