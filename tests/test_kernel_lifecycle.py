"""Managed serves in a real Jupyter kernel: re-run cells, async and sync cells, restart, kill,
clean shutdown and the start progress a cell shows.

Each test starts an ipykernel on this venv's python (jupyter_client, every wait bounded), runs
cells in it and looks at the registry and the processes from outside. Kernels are shut down and
runners stopped when the test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
from jupyter_client.manager import KernelManager

from tests.conftest import (
    chat_spec,
    gone,
    processes_of,
    stop_runners,
    wait_for,
    wait_reaped,
)

ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVE = ROOT / "tests" / "fake_serve" / "qvac"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROGRESS_LINE = re.compile(r"\[qvac\] starting serve: \d+s  .*")
IDLE = 1.0  # seconds: the serve outlives its last consumer by this much
REAP_SLACK = 10.0  # runner polls every 0.5 s, then SIGTERM and up to 5 s for the tree to exit
CELL_TIMEOUT = 180.0


@dataclass
class Cell:
    """What one executed cell produced."""

    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    def json(self) -> Any:
        """The last stdout line, parsed as JSON (cells below print one)."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"the cell printed nothing (stderr: {self.stderr!r})"
        return json.loads(lines[-1])


class Kernel:
    """A real ipykernel (kernel spec `python3`, run by this venv's python) and a client on it."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self.km = KernelManager(kernel_name="python3")
        # The spec says `python`; run it with exactly this venv's interpreter.
        self.km.kernel_spec.argv = [  # type: ignore[union-attr]
            sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
        ]  # fmt: skip
        self.km.start_kernel(
            env=env,
            cwd=str(ROOT),
            extra_arguments=["--HistoryManager.hist_file=:memory:"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.pid = self.ask_pid()

    def run(self, code: str, timeout: float = CELL_TIMEOUT) -> Cell:
        """Execute `code` as one cell; raises TimeoutError if it does not finish in time."""
        cell = Cell()

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    cell.stdout += content["text"]
                else:
                    cell.stderr += content["text"]
            elif kind == "error":
                trace = ANSI.sub("", "\n".join(content["traceback"]))
                cell.error = f"{content['ename']}: {content['evalue']}\n{trace}"

        reply = self.kc.execute_interactive(
            textwrap.dedent(code), timeout=timeout, output_hook=hook, allow_stdin=False
        )
        if reply["content"]["status"] != "ok" and cell.error is None:
            cell.error = f"status {reply['content']['status']}"
        return cell

    def ok(self, code: str, timeout: float = CELL_TIMEOUT) -> Cell:
        """Execute `code` and fail the test if the cell raised."""
        cell = self.run(code, timeout)
        assert cell.error is None, cell.error
        return cell

    def ask_pid(self) -> int:
        info = self.ok("import json, os, sys; print(json.dumps([os.getpid(), sys.executable]))")
        pid, executable = info.json()
        assert executable == sys.executable, "the kernel must run on this venv's python"
        return int(pid)

    def restart(self, now: bool) -> None:
        """What Jupyter's "Restart kernel" does (`now`: kill it instead of asking it to exit)."""
        self.km.restart_kernel(now=now)
        self.kc.wait_for_ready(timeout=60)
        self.pid = self.ask_pid()

    def shutdown(self) -> None:
        """A clean shutdown: a shutdown request, then (jupyter_client) wait for the exit."""
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)

    def close(self) -> None:
        """End the kernel whatever state it is in (idempotent); kill by pid if it lingers."""
        self.kc.stop_channels()
        if self.km.has_kernel:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:
                if not gone(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: gone(self.pid), 10, f"kernel {self.pid} to exit")


@pytest.fixture
def start_kernel(
    qvac_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Kernel]]:
    """Start kernels on this test's registry; all are ended and runners stopped at the end.

    The kernel gets the test's environment (QVAC_HOME, QVAC_SERVE_BIN and QVAC_MANAGED_QUIET=1
    from the fixtures), plus QVAC_TEST_MODEL; `quiet=False` drops QVAC_MANAGED_QUIET, and keyword
    arguments add variables.
    """
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    kernels: list[Kernel] = []
    logs: list[IO[bytes]] = []

    def start(quiet: bool = True, **extra: str) -> Kernel:
        env = dict(os.environ)
        env.update(
            QVAC_HOME=str(qvac_home),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            IPYTHONDIR=str(tmp_path / "ipython"),
            **extra,
        )
        if quiet:
            env["QVAC_MANAGED_QUIET"] = "1"
        else:
            env.pop("QVAC_MANAGED_QUIET", None)
        log = (tmp_path / f"kernel-{len(logs)}.log").open("wb")
        logs.append(log)
        kernel = Kernel(env, log)
        kernels.append(kernel)
        return kernel

    try:
        yield start
    finally:
        for kernel in kernels:
            kernel.close()
        for log in logs:
            log.close()
        stop_runners(qvac_home)


def make_llm(model: str, idle: float = IDLE) -> str:
    """The cell that builds the model (re-run it as a user would); prints what it attached to."""
    spec = chat_spec(model).model_dump(exclude_none=True)
    return f"""
        import json, time
        from langchain_qvac import ChatQvac

        began = time.monotonic()
        llm = ChatQvac(models=[{spec!r}], max_tokens=4, temperature=0, serve_idle_timeout={idle!r})
        lease = llm.lease
        print(json.dumps({{"serve": lease.pid, "runner": lease.runner_pid, "key": lease.fleet_key,
                          "reused": lease.reused, "seconds": time.monotonic() - began}}))
    """


def markers_of(home: Path, key: str, pid: int) -> list[Path]:
    """Consumer markers in the registry for `key` that name process `pid`."""
    folder = home / "managed-serves" / f"{key}.consumers"
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.split(".", 1)[0] == str(pid)]


def serves_of(home: Path) -> list[psutil.Process]:
    return [p for p in processes_of(home) if "--openai" in p.cmdline()]


def runners_and_serves(home: Path) -> list[psutil.Process]:
    """Processes of registry `home` but the kernels (which inherit QVAC_HOME too)."""
    return [p for p in processes_of(home) if "ipykernel_launcher" not in p.cmdline()]


def wait_no_serves(home: Path) -> None:
    wait_for(lambda: not runners_and_serves(home), 30, "every runner and serve to exit")


@pytest.mark.real_serve
def test_rerunning_the_model_cell_keeps_one_serve_and_one_marker(
    real_serve: str, qvac_home: Path, start_kernel: Callable[..., Kernel]
) -> None:
    kernel = start_kernel(QVAC_TEST_MODEL=real_serve)
    runs = [kernel.ok(make_llm(real_serve)).json() for _ in range(3)]
    key = runs[0]["key"]
    assert [r["reused"] for r in runs] == [False, True, True]
    assert len({r["serve"] for r in runs}) == 1, runs
    assert [p.pid for p in serves_of(qvac_home)] == [runs[0]["serve"]]
    consumers = list((qvac_home / "managed-serves" / f"{key}.consumers").iterdir())
    assert consumers == markers_of(qvac_home, key, kernel.pid) and len(consumers) == 1, consumers

    # The two replaced objects were never closed; collecting them releases their shares, so
    # closing the last object detaches the kernel.
    refs = kernel.ok(f"""
        import gc
        from qvac_managed_core import lease as lease_module
        gc.collect()
        print(lease_module._HANDLES[{key!r}].refs)
    """).json()
    assert refs == 1, "the replaced model objects still hold the lease after collection"
    kernel.ok("llm.close()")
    assert markers_of(qvac_home, key, kernel.pid) == []
    wait_for(lambda: gone(runs[0]["serve"]), IDLE + REAP_SLACK, "the idle serve to be reaped")
    wait_no_serves(qvac_home)


@pytest.mark.real_serve
def test_async_and_sync_cells_work_while_the_kernel_loop_runs(
    real_serve: str, qvac_home: Path, start_kernel: Callable[..., Kernel]
) -> None:
    kernel = start_kernel(QVAC_TEST_MODEL=real_serve)
    serve = kernel.ok(make_llm(real_serve)).json()["serve"]
    report = """
        import asyncio, json
        asyncio.get_running_loop()  # raises unless the cell runs inside the kernel's loop
        print(json.dumps({"finish": reply.response_metadata.get("finish_reason"),
                          "tokens": reply.usage_metadata["output_tokens"], "pid": lease.pid}))
    """
    async_cell = kernel.ok('reply = await llm.ainvoke("hi")\n' + textwrap.dedent(report)).json()
    sync_cell = kernel.ok('reply = llm.invoke("hi")\n' + textwrap.dedent(report)).json()
    for result in (async_cell, sync_cell):
        assert result["finish"] in ("stop", "length"), result
        assert result["tokens"] > 0, result
        assert result["pid"] == serve
    kernel.ok("llm.close()")
    wait_for(lambda: gone(serve), IDLE + REAP_SLACK, "the idle serve to be reaped")
    wait_no_serves(qvac_home)


@pytest.mark.real_serve
@pytest.mark.parametrize("leave", ["restart", "restart-now", "sigkill"])
def test_kernel_restart_or_kill_lets_the_serve_be_reaped(
    real_serve: str, qvac_home: Path, start_kernel: Callable[..., Kernel], leave: str
) -> None:
    kernel = start_kernel(QVAC_TEST_MODEL=real_serve)
    info = kernel.ok(make_llm(real_serve)).json()
    old_pid = kernel.pid
    assert len(markers_of(qvac_home, info["key"], old_pid)) == 1
    left = time.monotonic()
    if leave == "sigkill":
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: gone(old_pid), 10, "the killed kernel to die")
    else:
        kernel.restart(now=leave == "restart-now")
        assert kernel.pid != old_pid
        if leave == "restart":  # the old kernel exited normally: it detached on its way out
            assert markers_of(qvac_home, info["key"], old_pid) == []
        assert kernel.ok("print('llm' in globals())").stdout.strip() == "False"
    wait_for(lambda: gone(info["serve"]), IDLE + REAP_SLACK, "the serve to be reaped")
    reaped_after = time.monotonic() - left
    wait_for(lambda: gone(info["runner"]), 10, "the runner to exit after reaping")
    assert markers_of(qvac_home, info["key"], old_pid) == [], "the dead kernel's marker is left"
    assert reaped_after <= IDLE + REAP_SLACK
    print(f"{leave}: serve reaped {reaped_after:.1f} s after the kernel left")
    if leave != "sigkill":  # the new kernel works and starts a new serve on demand
        again = kernel.ok(make_llm(real_serve)).json()
        assert again["reused"] is False and again["serve"] != info["serve"]
        kernel.ok("llm.close()")
        wait_for(lambda: gone(again["serve"]), IDLE + REAP_SLACK, "the second serve's reap")
    wait_no_serves(qvac_home)


@pytest.mark.real_serve
def test_clean_kernel_shutdown_detaches_at_once(
    real_serve: str, qvac_home: Path, start_kernel: Callable[..., Kernel]
) -> None:
    long_idle = 30.0  # far longer than the test looks: only detaching can remove the marker
    kernel = start_kernel(QVAC_TEST_MODEL=real_serve)
    info = kernel.ok(make_llm(real_serve, idle=long_idle)).json()
    assert len(markers_of(qvac_home, info["key"], kernel.pid)) == 1
    started = time.monotonic()
    kernel.shutdown()
    took = time.monotonic() - started
    assert gone(kernel.pid)
    assert markers_of(qvac_home, info["key"], kernel.pid) == [], "a clean exit left its marker"
    assert not gone(info["serve"]), "shutting a consumer down must not stop the serve"
    assert took < 10, f"shutdown took {took:.1f} s"
    stop_runners(qvac_home)
    wait_reaped(qvac_home)


def progress_lines(cell: Cell) -> list[str]:
    """The cell's progress lines, each checked to be one whole `[qvac] starting serve` line."""
    assert "[qvac]" not in cell.stdout, "progress belongs on stderr"
    lines = [line for line in cell.stderr.splitlines() if "[qvac]" in line]
    assert all(PROGRESS_LINE.fullmatch(line) for line in lines), lines
    return lines


@pytest.mark.real_serve
def test_cold_start_progress_in_a_cell_is_not_flooded(
    real_serve: str, qvac_home: Path, start_kernel: Callable[..., Kernel]
) -> None:
    kernel = start_kernel(quiet=False, QVAC_TEST_MODEL=real_serve)
    cell = kernel.ok(make_llm(real_serve))
    took = cell.json()["seconds"]  # the construction alone: acquiring the cold serve
    lines = progress_lines(cell)
    assert len(lines) <= 3, lines
    if took > 1.5:  # progress starts after 1 s of starting (and the start polls every 0.05 s)
        assert lines, f"a {took:.1f} s start in a notebook showed no progress"
    kernel.ok("llm.close()")
    wait_for(lambda: gone(cell.json()["serve"]), IDLE + REAP_SLACK, "the idle serve's reap")
    wait_no_serves(qvac_home)


def test_slow_start_shows_a_few_progress_lines(
    fake_serve: Callable[..., None], qvac_home: Path, start_kernel: Callable[..., Kernel]
) -> None:
    delay = 8.0  # unthrottled, the 0.05 s start polling would print some 140 lines
    fake_serve("slow-start", FAKE_QVAC_START_DELAY=str(delay))
    kernel = start_kernel(quiet=False, QVAC_SERVE_BIN=str(FAKE_SERVE))
    started = time.monotonic()
    cell = kernel.ok(f"""
        import json
        from langchain_qvac import ChatQvac

        llm = ChatQvac(models=["QWEN3_600M_INST_Q4"], serve_idle_timeout={IDLE!r})
        print(json.dumps({{"serve": llm.lease.pid}}))
    """)
    assert time.monotonic() - started >= delay
    lines = progress_lines(cell)
    assert 1 <= len(lines) <= 3, cell.stderr
    seconds = [int(re.search(r"(\d+)s", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert seconds == sorted(seconds) and seconds[0] >= 1, lines
    kernel.ok("llm.close()")
    wait_for(lambda: gone(cell.json()["serve"]), IDLE + REAP_SLACK, "the idle serve's reap")
    wait_no_serves(qvac_home)
