"""A consumer process for multi-process tests: acquires a lease and obeys stdin commands.

    python tests/helpers/consumer.py '{"models": [...], "serve_idle_timeout": 2}'

Prints one JSON line describing the lease, then reads commands, one per line:
`chat` (one request through the lease's transport; prints the status), `close`, `exit`
(leave without closing: the atexit path). EOF exits too.
"""

from __future__ import annotations

import json
import sys

import httpx

from qvac_managed_core import acquire


def main() -> int:
    options = json.loads(sys.argv[1])
    try:
        lease = acquire(**options)
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "code": getattr(exc, "code", None),
                          "message": str(exc)}), flush=True)  # fmt: skip
        return 1
    info = {
        "pid": lease.pid,
        "runner_pid": lease.runner_pid,
        "port": lease.port,
        "base_url": lease.base_url,
        "reused": lease.reused,
        "fleet_key": lease.fleet_key,
    }
    print(json.dumps(info), flush=True)
    client = httpx.Client(transport=lease.http_transport(), base_url=lease.base_url, timeout=60)
    for line in sys.stdin:
        command = line.strip()
        if command == "chat":
            body = {"model": lease.default_model, "max_tokens": 4,
                    "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
            response = client.post("/chat/completions", json=body)
            print(json.dumps({"status": response.status_code, "pid": lease.pid}), flush=True)
        elif command == "close":
            lease.close()
            print(json.dumps({"closed": True}), flush=True)
        elif command == "exit":
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
