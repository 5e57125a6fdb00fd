"""The `qvac serve` child: how to find it, start it, watch it and stop its whole process tree.

The serve runs in its own session and process group with stdout and stderr appended to a log file
(never a pipe to the runner), so it keeps working if the runner dies; stopping it kills whatever
is left of its tree, so its `bare` inference worker is never orphaned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import psutil

from .errors import CliNotFoundError, PortAllocationFailedError

STOP_GRACE = 5.0
LOG_LIMIT_BYTES = 1_000_000
LOG_KEEP_BYTES = 200_000
INSTALL_HINT = (
    "Install the QVAC CLI with `npm i -g @qvac/cli` (Node.js 20+), or point QVAC_SERVE_BIN "
    "(or serve_bin_path=) at an existing `qvac` executable."
)


def resolve_serve_bin(explicit: str | None = None) -> str:
    """The `qvac` executable: `explicit`, else `$QVAC_SERVE_BIN`, else `qvac` on PATH."""
    candidate = explicit or os.environ.get("QVAC_SERVE_BIN")
    if candidate:
        path = os.path.abspath(os.path.expanduser(candidate))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        source = "serve_bin_path" if explicit else "QVAC_SERVE_BIN"
        raise CliNotFoundError(f"{source}={candidate!r} is not an executable file. {INSTALL_HINT}")
    found = shutil.which("qvac")
    if found:
        return found
    raise CliNotFoundError(f"The `qvac` CLI was not found on PATH. {INSTALL_HINT}")


def serve_argv(bin_path: str, config: str, port: int, host: str, key_file: str) -> list[str]:
    """CLI 0.13's form; the key travels in a file, never in argv."""
    return [
        bin_path, "serve", "--openai", "--no-default", "--config", config,
        "--port", str(port), "--host", host, "--api-key-file", key_file,
    ]  # fmt: skip


def allocate_port(host: str) -> int:
    """A free TCP port on `host`, found by binding port 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host.strip("[]"), 0))
            return int(sock.getsockname()[1])
    except OSError as exc:
        raise PortAllocationFailedError(f"Could not bind a free port on {host}: {exc}") from exc


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def start_serve(argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start the serve in a new session, output appended to `log_file` (0600)."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)


def process_tree(pid: int) -> list[psutil.Process]:
    """`pid`, its descendants, and anything else still in its process group."""
    procs: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(pid)
        procs[pid] = root
        for child in root.children(recursive=True):
            procs[child.pid] = child
    except psutil.Error:
        pass
    with contextlib.suppress(OSError):
        pgid = os.getpgid(pid)
        if pgid == pid:  # the serve leads its own group: reparented stragglers are still in it
            for proc in psutil.process_iter():
                with contextlib.suppress(psutil.Error, OSError):
                    if proc.pid not in procs and os.getpgid(proc.pid) == pgid:
                        procs[proc.pid] = proc
    return list(procs.values())


def stop_tree(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM the serve, wait up to `grace` s, then SIGKILL every process left in its tree."""
    tree = process_tree(pid)
    if not tree:
        return
    with contextlib.suppress(psutil.Error):
        tree[0].send_signal(signal.SIGTERM)
    psutil.wait_procs(tree[:1], timeout=grace)
    tree.extend(p for p in process_tree(pid) if p.pid not in {q.pid for q in tree})
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
    psutil.wait_procs(tree, timeout=grace)
    remove_worker_sockets(pid)


def remove_worker_sockets(serve_pid: int) -> None:
    """Delete the `qvac-worker-<pid>-*.sock` files a killed serve leaves in the temp dir."""
    for sock in Path(tempfile.gettempdir()).glob(f"qvac-worker-{serve_pid}-*.sock"):
        with contextlib.suppress(OSError):
            sock.unlink()


def log_tail(log_file: Path, limit: int = 4000) -> str:
    """The last `limit` characters of the serve's log, for error messages."""
    try:
        with open(log_file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def bound_log(log_file: Path) -> None:
    """Keep the log under LOG_LIMIT_BYTES by truncating it to its tail (the serve appends)."""
    try:
        if log_file.stat().st_size <= LOG_LIMIT_BYTES:
            return
        tail = log_tail(log_file, LOG_KEEP_BYTES)
        with open(log_file, "r+", encoding="utf-8") as fh:
            fh.truncate(0)
            fh.write("[log truncated]\n" + tail)
    except OSError:
        pass


def established_connections(port: int, exclude: frozenset[int] = frozenset()) -> int:
    """How many ESTABLISHED TCP connections other processes hold to `port` on this machine.

    On Linux this reads /proc/net/tcp{,6} (cheap, no per-process scan) and counts the client ends,
    which belong to other processes by construction; elsewhere it asks psutil.
    """
    proc_files = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if proc_files[0].exists():
        count = 0
        for table in proc_files:
            try:
                lines = table.read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if len(cols) > 3 and cols[3] == "01" and int(cols[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
        return count
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return 0
    return sum(
        1
        for c in conns
        if c.status == psutil.CONN_ESTABLISHED
        and c.raddr
        and c.raddr.port == port
        and c.pid not in exclude
    )
