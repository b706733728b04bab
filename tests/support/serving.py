"""Serve an ASGI app on 127.0.0.1 in a background thread, for tests and benchmarks.

The listening socket is created as IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections
only when the socket's `proto` says TCP, and without it Nagle's algorithm plus delayed ACKs add
~40 ms to every response on a kept-alive connection (uvicorn writes head and body separately).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve_in_thread", "tcp_listener"]


def tcp_listener(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextmanager
def serve_in_thread(
    app: ASGIApp, *, name: str, port: int = 0, lifespan: Literal["auto", "on", "off"] = "off"
) -> Iterator[str]:
    """Yield the base URL while `app` is served; stop the server on exit."""
    sock = tcp_listener(port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name=name, daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"{name} failed to start")
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
