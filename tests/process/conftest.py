"""Fixtures for the process tests: a generated export and what the real chunker makes of it, the
Messages-API simulator, an alert receiver, and the service started as real subprocesses."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.make_export import write_export
from tests.process.backends import Backend, LocalBackend, PostgresBackend
from tests.support import pg
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator
from tests.support.postgrest_server import PostgrestServer, running_postgrest
from tests.support.service_process import ServiceProcess, service_env
from tests.support.webhook_receiver import WebhookReceiver, running_receiver

API_KEY = "process-test-secret"
SIM_KEY = "sk-sim-process"
CONCURRENCY = 3
# Fast clocks so a takeover after a crash happens within seconds, not minutes.
FAST_JOBS: dict[str, str | float | int] = {
    "lease_seconds": 2,
    "heartbeat_seconds": 0.5,
    "poll_seconds": 0.1,
    "retry_backoff_seconds": 0.2,
    "shutdown_grace_seconds": 0.5,
    "fact_extraction_concurrency": CONCURRENCY,
    "anthropic_max_retries": 1,
    # Small requests (a few excerpts each), so a 1 MB export makes enough of them to be caught
    # mid-extraction.
    "extraction_request_tokens": 1_000,
}


@pytest.fixture(scope="session")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_export(
        tmp_path_factory.mktemp("exports") / "export-1mb.json", size_mb=1.0, fmt="json", seed=11
    )


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Callable[[float], Path]:
    """`exports(size_mb)`: a generated export of that size (seed 11: a smaller one's
    conversations are the first of a larger one's), written once per session."""
    root = tmp_path_factory.mktemp("sized-exports")

    def export_of(size_mb: float) -> Path:
        path = root / f"export-{size_mb:g}mb.json"
        if not path.exists():
            write_export(path, size_mb=size_mb, fmt="json", seed=11)
        return path

    return export_of


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(latency_s=0.12, jitter=0.5, seed=5)
    with running_simulator(config) as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as hooks:
        yield hooks


class Services:
    """Start service processes for one test and make sure none outlives it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[ServiceProcess] = []

    def start(self, command: str, **settings: Any) -> ServiceProcess:
        n = len(self.started)
        process = ServiceProcess(
            command,
            env=service_env(**settings),
            log_path=self.root / f"{command}-{n}.log",
            workdir=self.root / "cwd",
        )
        self.started.append(process)
        process.wait_healthy()
        return process

    def close(self) -> None:
        for process in self.started:
            process.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    running = Services(tmp_path)
    yield running
    running.close()


def wait_until(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    context: Callable[[], object] | None = None,
) -> Any:
    """Poll `check` until it returns something truthy; fail saying what never happened (and,
    with `context`, what the state was then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    state = f"; state: {context()}" if context is not None else ""
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{state}")


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[tuple[str, PostgrestServer, Path]]:
    """A fresh migrated database behind the PostgREST stand-in, and its storage folder."""
    storage = tmp_path / "pg-storage"
    storage.mkdir()
    with (
        pg.migrated_database("soulprint_process") as conninfo,
        running_postgrest(conninfo, storage) as server,
    ):
        yield conninfo, server, storage


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return LocalBackend(tmp_path / "data")
    conninfo, server, storage = request.getfixturevalue("postgres")
    return PostgresBackend(conninfo, server, storage)
