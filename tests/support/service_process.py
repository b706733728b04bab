"""The service as a real operating-system process: `python -m app serve` or `python -m app worker`.

Tests and the crash trial start it with an explicit environment (nothing inherited but PATH and a
few locale variables, and a working directory without a `.env`), wait for `/health`, then end it
the way production does: SIGTERM on a deploy, SIGKILL on a crash. Its JSON log lines are kept in a
file and read back as events, which is how the tests see claims, releases and completions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ServiceProcess", "free_port", "read_events", "service_env"]

_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")
# The checkout under test: without it a process started outside the checkout imports `app` from
# wherever the virtualenv's editable install points (another checkout, in a git worktree).
_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(**settings: str | float | int | Path) -> dict[str, str]:
    """The environment for one service process: JSON logs plus exactly `settings` (upper-cased)."""
    env = {name: os.environ[name] for name in _KEPT_ENV if name in os.environ}
    env |= {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = str(_ROOT)
    env |= {name.upper(): str(value) for name, value in settings.items()}
    return env


class ServiceProcess:
    """One running `python -m app <command>`; its stdout and stderr go to `log_path`."""

    def __init__(
        self,
        command: str,
        *,
        env: Mapping[str, str],
        log_path: Path,
        workdir: Path,
        port: int | None = None,
    ) -> None:
        if command == "serve" and port is None:
            port = free_port()
        self.command = command
        self.port = port
        self.log_path = log_path
        args = [sys.executable, "-m", "app", command]
        if command == "serve":
            args += ["--host", "127.0.0.1", "--port", str(port)]
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            args,
            cwd=workdir,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until `/health` answers 200 (serve) or the runner logged its start (worker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.command} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            if self.command == "serve":
                try:
                    if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            elif self.events("runner.started"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.command} not ready after {timeout:g} s:\n{self.tail()}")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a deploy) and wait for the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self._wait(timeout)

    def kill(self) -> int:
        """SIGKILL (a crash, an OOM kill): no handler runs, nothing is released."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        return self._wait(10.0)

    def _wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self._log.close()
        return code

    def close(self) -> None:
        """Never leave a process behind, whatever the test did."""
        if self.alive():
            self.kill()
        self._log.close()

    # --- logs ----------------------------------------------------------------------------------

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (all, or those whose event is `name`)."""
        return [e for e in read_events(self.log_path) if name is None or e.get("event") == name]


def read_events(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if not path.exists():
        return found
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a line cut by SIGKILL
    return found
