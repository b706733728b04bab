"""Load on the API: concurrent clients posting and polling the local service for a while.

    python -m bench.load_api [--clients 200] [--seconds 30] [--clients-per-user 4]

The service runs as a subprocess (`python -m app serve`) on the embedded defaults (local SQLite
store, offline provider, its job runner on), on 127.0.0.1 only. Clients share users in groups, so
several race to POST for the same user at once. Reported: requests, p50 / p99 latency by
endpoint, errors (any 5xx, transport error, or unexpected status; target 0), and duplicate active
jobs per user (target 0), checked from the job table afterwards: no two jobs of one user may have
overlapping lifetimes (created → completed).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import aiohttp
import httpx
import uvloop

API_KEY = "load-test-key"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: int = 0

    def record(self, endpoint: str, started: float, status: int | None, expected: set[int]) -> None:
        self.requests += 1
        self.latencies[endpoint].append(time.perf_counter() - started)
        if status not in expected:
            self.errors[f"{endpoint} -> {status}"] += 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _seed(data_dir: Path, users: list[str]) -> None:
    """Profiles and one export per user, as the product would have them before the POST."""
    from app.adapters.local_store import LocalStore

    sample = Path(str(resources.files("app.sample_data").joinpath("sample-export.json")))

    async def seed() -> None:
        store = LocalStore(data_dir)
        for user in users:
            await store.ensure_profile(user)
            store.put_export(f"imports/{user}/export.json", sample)
        await store.aclose()

    asyncio.run(seed())


async def _timed(
    http: aiohttp.ClientSession,
    tally: Tally,
    endpoint: str,
    method: str,
    url: str,
    expected: int,
    body: dict[str, str] | None = None,
) -> dict[str, object] | None:
    started = time.perf_counter()
    try:
        async with http.request(method, url, json=body) as response:
            payload: dict[str, object] = await response.json(content_type=None)
            tally.record(endpoint, started, response.status, {expected})
            return payload if response.status == expected else None
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.record(endpoint, started, None, {expected})
        tally.errors[type(exc).__name__] += 1
        return None


async def _client(
    http: aiohttp.ClientSession, base_url: str, user: str, deadline: float, tally: Tally
) -> None:
    body = {"user_id": user, "storage_path": f"imports/{user}/export.json"}
    while time.perf_counter() < deadline:
        accepted = await _timed(
            http, tally, "POST /process-full-v2", "POST", f"{base_url}/process-full-v2", 202, body
        )
        if accepted is not None and time.perf_counter() < deadline:
            url = f"{base_url}/jobs/{accepted['job_id']}"
            await _timed(http, tally, "GET /jobs/{id}", "GET", url, 200)
        if time.perf_counter() < deadline:
            url = f"{base_url}/users/{user}/full-pass"
            await _timed(http, tally, "GET /users/{id}/full-pass", "GET", url, 200)


def _overlapping_jobs(db: Path) -> int:
    """Pairs of one user's jobs whose lifetimes overlap: a second active job was created."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT user_id, created_at, COALESCE(completed_at, '9999') FROM processing_jobs"
            " ORDER BY user_id, created_at"
        ).fetchall()
    overlaps = 0
    for (user, _, end), (next_user, next_start, _) in itertools.pairwise(rows):
        if user == next_user and next_start < end:
            overlaps += 1
    return overlaps


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(base_url: str, users: list[str], clients: int, seconds: float) -> Tally:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _client(http, base_url, users[i % len(users)], deadline, tally)
                for i in range(clients)
            )
        )
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients-per-user", type=int, default=4)
    parser.add_argument(
        "--no-worker", action="store_true", help="run the API without its job runner (baseline)"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="soulprint-load-"))
    users = [str(uuid.uuid4()) for _ in range(max(1, args.clients // args.clients_per_user))]
    _seed(workdir / "data", users)
    port = _free_port()
    env = {
        **os.environ,
        "LOCAL_DATA_DIR": str(workdir / "data"),
        "RLM_API_KEY": API_KEY,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "POLL_SECONDS": "0.2",
        "RUN_WORKER": "false" if args.no_worker else "true",
    }
    for name in ("SUPABASE_URL", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "service.log").open("wb"),
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        started = time.perf_counter()
        tally = uvloop.run(_load(base_url, users, args.clients, args.seconds))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)
    overlaps = _overlapping_jobs(workdir / "data" / "soulprint.db")
    with sqlite3.connect(workdir / "data" / "soulprint.db") as conn:
        jobs = conn.execute(
            "SELECT status, COUNT(*) FROM processing_jobs GROUP BY status"
        ).fetchall()

    worker = "off" if args.no_worker else "on"
    print(f"clients={args.clients} users={len(users)} seconds={args.seconds:g} worker={worker}")
    print(f"requests={tally.requests} ({tally.requests / elapsed:.0f}/s)")
    for endpoint, values in sorted(tally.latencies.items()):
        print(
            f"  {endpoint:32s} n={len(values):6d} p50={statistics.median(values) * 1000:7.1f} ms"
            f" p99={_percentile(values, 0.99) * 1000:7.1f} ms"
        )
    print(f"errors={sum(tally.errors.values())} {dict(tally.errors) if tally.errors else ''}")
    print(f"duplicate_active_jobs={overlaps}")
    print(f"jobs_by_status={dict(jobs)}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if not tally.errors and overlaps == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
