"""The sweep run at every acquire: drop what is dead, stop true orphans, never harm a live serve.

- A record whose serve is dead is dropped (and its config dir, if it is one of ours).
- A serve whose runner is dead but that answers with the recorded key is an orphan: stopped.
- An alive serve that does not answer is left alone (it may be busy, or not ours to judge).
- Consumer markers of live processes are kept; stale runner-param and temp files go.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from . import paths, registry
from .health import probe
from .serve_process import remove_worker_sockets, stop_tree

STALE_FILE_AGE = 360.0  # seconds; twice the default start timeout, as the TypeScript side uses


def remove_config_dir(config_path: str) -> None:
    """Remove a serve's temp config dir, but only one this project (or TypeScript) created."""
    if not config_path:
        return
    folder = Path(config_path).parent
    if folder.name.startswith(paths.CONFIG_DIR_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def sweep() -> list[str]:
    """Clean the registry; returns the keys whose records were dropped."""
    dropped: list[str] = []
    folder = paths.registry_dir()
    for key in registry.list_record_keys():
        record = registry.read_record(key)
        if record is None:
            continue  # unparsable or foreign: ignored, never fatal
        if record.serve_alive():
            if record.runner_alive():
                continue
            if not probe(record.host, record.port, record.api_key, timeout=2.0).ready:
                continue  # alive but not answering with our key: keep for a later sweep
            stop_tree(record.serve_pid)
        remove_worker_sockets(record.serve_pid)
        if registry.remove_record(key, serve_pid=record.serve_pid):
            remove_config_dir(record.config_path)
            dropped.append(key)
    now = time.time()
    for pattern in ("*.runner-params.json", "*.tmp"):
        for path in folder.glob(pattern):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime >= STALE_FILE_AGE:
                    path.unlink()
    return dropped
