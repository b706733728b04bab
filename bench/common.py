"""Helpers shared by the LLM-stage benchmarks: settings, exports, chunks, RSS, the simulator.

The simulator runs in a subprocess (`python -m bench.simulator`), not in the measured process: in
production the API is remote, so neither its CPU (it answers through the offline provider) nor its
memory belongs in a wall time or a peak RSS of ours. Its ledger is read over HTTP. Its socket has
TCP_NODELAY on (tests/support/serving.py), so no Nagle + delayed-ACK delay is measured.
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from app.domain import Chunk
from app.logging import configure_logging
from app.processors.reading.chunking import chunk_conversation
from app.processors.reading.export_reader import iter_conversations
from bench.make_export import write_export

__all__ = [
    "OUT_DIR",
    "USER_ID",
    "bench_settings",
    "ensure_export",
    "export_chunks",
    "free_port",
    "machine",
    "peak_rss_mb",
    "quiet_logs",
    "sim_ledger",
    "simulator_process",
    "stream",
]

USER_ID = "00000000-0000-4000-8000-00000000b001"
OUT_DIR = Path("bench/out")


def peak_rss_mb() -> float:
    """This process's high-water resident set (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quiet_logs(level: str = "ERROR") -> None:
    """Logs to stderr as JSON at `level`: the benchmark's own output stays readable on stdout."""
    configure_logging(log_format="json", level=level)


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} vCPU {cpu}, Linux {platform.release()}, Python {sys.version.split()[0]}"
    )


def bench_settings(**overrides: Any) -> Settings:
    """Settings from defaults and `overrides` only: no .env, no environment surprises."""
    return Settings(_env_file=None, **overrides)


def ensure_export(
    size_mb: float,
    *,
    seed: int = 7,
    name: str | None = None,
    shape: str = "default",
    conversations: int | None = None,
) -> Path:
    """The generated JSON export of `size_mb` MiB (or of `conversations` conversations) of
    `bench.make_export`'s `shape`, in bench/out (generated once, then reused)."""
    if name is None:
        amount = f"{conversations}conv" if conversations is not None else f"{size_mb:g}mb"
        prefix = "export" if shape == "default" else f"export-{shape}"
        name = f"{prefix}-{amount}" + ("" if seed == 7 else f"-seed{seed}") + ".json"
    path = OUT_DIR / name
    if not path.exists():
        write_export(
            path, size_mb=size_mb, fmt="json", seed=seed, shape=shape, conversations=conversations
        )
    return path


def export_chunks(
    path: Path,
    *,
    settings: Settings,
    target_tokens: int | None = None,
    overlap_tokens: int | None = None,
) -> Iterator[Chunk]:
    """The export's chunks, read and chunked exactly as an import does (by default)."""
    for conversation in iter_conversations(path, settings=settings):
        yield from chunk_conversation(
            conversation,
            user_id=USER_ID,
            target_tokens=target_tokens or settings.chunk_target_tokens,
            overlap_tokens=settings.chunk_overlap_tokens
            if overlap_tokens is None
            else overlap_tokens,
            max_message_chars=settings.max_message_chars,
        )


async def stream(items: Iterable[Chunk]) -> AsyncIterator[Chunk]:
    for item in items:
        yield item


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def simulator_process(
    *,
    latency: float = 0.0,
    jitter: float = 0.0,
    rate_429: float = 0.0,
    retry_after: float = 1.0,
    rate_529: float = 0.0,
    seed: int = 0,
    extra: Sequence[str] = (),
    control_port: int | None = None,
) -> Iterator[str]:
    """Run `bench.simulator` in a subprocess; yield its base URL; stop it on exit.

    `extra`: more of its options (`--rpm 50`, `--batch-processing 60`, `--storm ...`).
    `control_port`: also serve control and the ledger there (open while the main port refuses).
    """
    port = free_port()
    if control_port is not None:
        extra = [*extra, f"--control-port={control_port}"]
    args = [
        sys.executable,
        "-m",
        "bench.simulator",
        f"--port={port}",
        f"--latency={latency}",
        f"--jitter={jitter}",
        f"--rate-429={rate_429}",
        f"--retry-after={retry_after}",
        f"--rate-529={rate_529}",
        f"--seed={seed}",
        *extra,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"the simulator exited at start: {err[-500:]}")
            try:
                httpx.get(f"{base_url}/ledger", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def sim_ledger(base_url: str) -> dict[str, Any]:
    """The simulator's ledger: requests by outcome and by task, token totals."""
    response = httpx.get(f"{base_url}/ledger", timeout=10)
    response.raise_for_status()
    ledger: dict[str, Any] = response.json()
    return ledger
