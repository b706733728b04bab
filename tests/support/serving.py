"""Serve an ASGI app on 127.0.0.1 in a background thread, for tests and benchmarks.

The listening socket is created as IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections
only when the socket's `proto` says TCP, and without it Nagle's algorithm plus delayed ACKs add
~40 ms to every response on a kept-alive connection (uvicorn writes head and body separately).

`serving` also yields a `Served` handle for faults below HTTP, which a client sees as connection
errors: `reset(client)` aborts one connection with a TCP RST; `refuse()` closes the listening
socket (new connections are refused) and resets the open ones; `accept()` listens again on the
same port; an optional control port stays open meanwhile. Connections are tracked by a subclass
of uvicorn's protocol class (`http=` accepts a class), keyed by the peer address that ASGI's
`scope["client"]` names.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["Served", "serve_in_thread", "serving", "tcp_listener"]

_Peer = tuple[str, int]


def tcp_listener(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class Served:
    """A server running in a thread: its URLs, and connection faults (call these on its loop)."""

    def __init__(self, port: int, control_port: int | None) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.control_url = (
            self.base_url if control_port is None else f"http://127.0.0.1:{control_port}"
        )
        self.connections: dict[_Peer, asyncio.Transport] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: uvicorn.Server | None = None
        self.listening = True
        self._port = port

    def reset(self, client: Any) -> None:
        """Abort the connection of an ASGI `scope["client"]` with a RST (no response is sent)."""
        transport = self.connections.pop(tuple(client), None) if client else None
        if transport is not None:
            _abort(transport)

    def refuse(self) -> None:
        """Stop listening on the main port (connects are refused) and reset its connections."""
        if self.listening:
            self.listening = False
            self._main().close()
        for peer, transport in list(self.connections.items()):
            if transport.get_extra_info("sockname")[1] == self._port:
                self.reset(peer)

    async def accept(self) -> None:
        """Listen again on the main port: uvicorn's `startup` with a new socket (lifespan off)."""
        if not self.listening:
            assert self.server is not None
            assert self.server.config.lifespan == "off", "startup would run the lifespan again"
            others = self.server.servers[1:]
            self.listening = True
            await self.server.startup(sockets=[tcp_listener(self._port)])
            self.server.servers += others

    def call(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` on the server's loop from another thread and wait for it."""
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def protocol(self) -> type[asyncio.Protocol]:
        """uvicorn's protocol class, registering each connection under its peer address."""
        connections = self.connections

        class Tracked(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self._peer = tuple(transport.get_extra_info("peername")[:2])
                connections[self._peer] = transport  # type: ignore[assignment]
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                if connections.get(self._peer) is self.transport:
                    del connections[self._peer]
                super().connection_lost(exc)

        return Tracked

    def _main(self) -> asyncio.base_events.Server:
        assert self.server is not None
        return self.server.servers[0]  # uvicorn keeps them in the order of the sockets given


def _abort(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:  # linger 0: close() sends a RST, not a FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@contextmanager
def serving(
    app: ASGIApp,
    *,
    name: str,
    port: int = 0,
    control_port: int | None = None,
    lifespan: Literal["auto", "on", "off"] = "off",
) -> Iterator[Served]:
    """Yield a `Served` handle while `app` is served; stop the server on exit.

    With `control_port` (0 = a free one) the app is also served there, a listener that `refuse`
    leaves open: how a test reaches an app whose main port refuses connections.
    """
    sockets = [tcp_listener(port)]
    if control_port is not None:
        sockets.append(tcp_listener(control_port))
    served = Served(
        sockets[0].getsockname()[1],
        sockets[1].getsockname()[1] if control_port is not None else None,
    )
    server = served.server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=served.protocol(),
            log_level="warning",
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=1,
        )
    )

    async def serve() -> None:
        served.loop = asyncio.get_running_loop()
        await server.serve(sockets=sockets)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name=name, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"{name} failed to start")
            threading.Event().wait(0.01)
        yield served
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for sock in sockets:
            sock.close()


@contextmanager
def serve_in_thread(
    app: ASGIApp, *, name: str, port: int = 0, lifespan: Literal["auto", "on", "off"] = "off"
) -> Iterator[str]:
    """Yield the base URL while `app` is served; stop the server on exit."""
    with serving(app, name=name, port=port, lifespan=lifespan) as served:
        yield served.base_url
