"""FakeSupabase served over real HTTP, so `SupabaseStore` in OTHER processes reaches PostgreSQL
through the migration's functions exactly as it would reach Supabase: `SUPABASE_URL=<base_url>`.

Each request is answered by one of a small pool of FakeSupabase instances (one PostgreSQL
connection each) in a worker thread, so concurrent claims from several workers really meet in the
database (`FOR UPDATE SKIP LOCKED`), not in a Python lock. An outage can be switched on from the
test: matching requests then get PostgREST's 503 (`PGRST002`) until it ends — or another status,
with the body PostgREST sends for it (409: a unique violation, 23505; 400: a RAISE, P0001) — for a
time, for a number of requests, or after letting some through.

    with running_postgrest(conninfo, storage_dir) as server:
        env = {"SUPABASE_URL": server.base_url, ...}
        server.outage(seconds=1.5)                      # everything 503 for 1.5 s
        server.outage(tables=("conversation_chunks",))  # that table only, until cleared
        server.outage(tables=("save_conversation_chunks",), status=409, count=3)  # a burst
        server.outage(tables=("save_conversation_chunks",), status=400, after=2)  # for good
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_postgrest import FakeSupabase
from tests.support.serving import serve_in_thread

__all__ = ["PostgrestServer", "running_postgrest"]

_OUTAGE_BODY = {
    "code": "PGRST002",
    "message": "Could not query the database for the schema cache. Retrying.",
    "details": None,
    "hint": None,
}
# What PostgREST answers with these statuses (FACTS.md: 23505 → 409, P0001 → 400).
_BODIES: dict[int, dict[str, str | None]] = {
    409: {
        "code": "23505",
        "message": 'duplicate key value violates unique constraint "conversation_chunks_pkey"',
        "details": "Key (id) already exists.",
        "hint": None,
    },
    400: {
        "code": "P0001",
        "message": "the stand-in refused this call (a test's outage)",
        "details": None,
        "hint": None,
    },
}
_PASSED_HEADERS = ("content-type", "content-range")


@dataclass
class _Outage:
    until: float | None  # monotonic deadline; None = until cleared
    tables: frozenset[str] | None  # None = every request
    status: int
    left: int | None = None  # matching requests still to refuse; None = no limit
    spare: int = 0  # matching requests still to let through first


class PostgrestServer:
    """The ASGI app and its state; `running_postgrest` serves it on a free local port."""

    def __init__(self, conninfo: str, storage_dir: Path, *, connections: int = 4) -> None:
        self._pool: queue.Queue[FakeSupabase] = queue.Queue()
        self._fakes = [FakeSupabase(conninfo, storage_dir) for _ in range(connections)]
        for fake in self._fakes:
            self._pool.put(fake)
        self._lock = threading.Lock()
        self._outage: _Outage | None = None
        self.refused: Counter[str] = Counter()
        self.base_url = ""
        self.app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PATCH", "DELETE"])]
        )

    def outage(
        self,
        *,
        seconds: float | None = None,
        tables: tuple[str, ...] | None = None,
        status: int = 503,
        count: int | None = None,
        after: int = 0,
    ) -> None:
        """Answer `status` to matching requests for `seconds` (None: until `end_outage`), to
        at most `count` of them (None: any number), once `after` of them went through."""
        until = None if seconds is None else time.monotonic() + seconds
        names = frozenset(tables) if tables else None
        with self._lock:
            self._outage = _Outage(until, names, status, left=count, spare=after)

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    def close(self) -> None:
        for fake in self._fakes:
            fake.close()

    def _refusing(self, path: str) -> int | None:
        name = path.removeprefix("rest/v1/").removeprefix("rpc/").split("/")[0]
        with self._lock:
            outage = self._outage
            if outage is None:
                return None
            if outage.until is not None and time.monotonic() >= outage.until:
                self._outage = None
                return None
            if outage.tables is not None and name not in outage.tables:
                return None
            if outage.spare > 0:
                outage.spare -= 1
                return None
            if outage.left is not None:
                outage.left -= 1
                if outage.left <= 0:
                    self._outage = None
            self.refused[name] += 1
            return outage.status

    async def _handle(self, request: Request) -> Response:
        path = request.path_params["path"]
        status = self._refusing(path)
        if status is not None:
            return JSONResponse(_BODIES.get(status, _OUTAGE_BODY), status_code=status)
        forwarded = httpx.Request(
            request.method,
            str(request.url),
            headers=[(k, v) for k, v in request.headers.items() if k.lower() != "host"],
            content=await request.body(),
        )
        answer = await asyncio.to_thread(self._answer, forwarded)
        headers = {k: v for k, v in answer.headers.items() if k.lower() in _PASSED_HEADERS}
        return Response(answer.content, status_code=answer.status_code, headers=headers)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        fake = self._pool.get()
        try:
            return fake(request)
        finally:
            self._pool.put(fake)


@contextmanager
def running_postgrest(
    conninfo: str, storage_dir: Path, *, connections: int = 4
) -> Iterator[PostgrestServer]:
    """Serve FakeSupabase over HTTP on 127.0.0.1 in a thread; stop it (and close its
    connections) on exit."""
    server_state = PostgrestServer(conninfo, storage_dir, connections=connections)
    try:
        with serve_in_thread(server_state.app, name="postgrest") as base_url:
            server_state.base_url = base_url
            yield server_state
    finally:
        server_state.close()
