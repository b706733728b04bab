"""The MCP server inside the service: `/mcp` over streamable HTTP, behind the shared secret.

The SDK's session manager owns a task group that must live exactly as long as the app, and a
mounted sub-app's own lifespan never runs; so `create_app`'s lifespan enters `mcp_sessions` (which
builds the server over the lifespan's store and starts its manager), and the route at `/mcp` is a
thin ASGI endpoint that checks the key and hands the request to that manager. A manager runs only
once, so each lifespan builds its own.

Stateless HTTP: every request stands alone (no `Mcp-Session-Id` kept in one process's memory), so
several instances behind one address serve the same agent; the tools need no server-to-client
channel. DNS-rebinding protection (a Host allow-list) is on only when the API is open on this
machine — no key and not ALLOW_UNAUTHENTICATED — since a browser page cannot send the secret, and
a deployed service answers to a hostname the SDK cannot know.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.api.deps import Services, require_api_key
from app.api.handlers import error_response
from app.config import Settings
from app.errors import AuthError
from app.mcp_server.server import build_mcp_server

__all__ = ["MCP_PATH", "MCPEndpoint", "mcp_sessions", "mount_mcp"]

MCP_PATH = "/mcp"
_LOCAL_ONLY = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
    allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
)
_BEHIND_THE_SECRET = TransportSecuritySettings(enable_dns_rebinding_protection=False)


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    open_locally = settings.rlm_api_key is None and not settings.allow_unauthenticated
    return _LOCAL_ONLY if open_locally else _BEHIND_THE_SECRET


@asynccontextmanager
async def mcp_sessions(app: FastAPI, services: Services) -> AsyncIterator[None]:
    """Run the MCP session manager for the app's lifetime (enter it from the app's lifespan).

    The manager's task group lives in a task of its own, so it is entered and left by one task
    even when the lifespan's start and end run in different tasks (as under a test harness)."""
    settings = services.settings
    server = build_mcp_server(
        settings=settings, store=services.store, exports_root=settings.local_data_dir / "storage"
    )
    server.streamable_http_app(
        stateless_http=True, transport_security=_transport_security(services.settings)
    )
    manager = server.session_manager
    running, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with manager.run():
            running.set()
            await stop.wait()

    holder = asyncio.create_task(hold(), name="mcp-session-manager")
    started = asyncio.create_task(running.wait())
    await asyncio.wait({holder, started}, return_when=asyncio.FIRST_COMPLETED)
    if not running.is_set():
        started.cancel()
        await holder  # raises what stopped the manager from starting
    app.state.mcp_sessions = manager
    try:
        yield
    finally:
        app.state.mcp_sessions = None
        stop.set()
        await holder


class MCPEndpoint:
    """ASGI app at `/mcp`: the shared secret (as every route but /health), then the SDK."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        manager: StreamableHTTPSessionManager | None = getattr(app.state, "mcp_sessions", None)
        services: Services | None = getattr(app.state, "services", None)
        if manager is None or services is None:
            response = error_response(503, "not_ready", "the MCP endpoint is not running")
            await response(scope, receive, send)
            return
        try:
            require_api_key(Request(scope), services)
        except AuthError as exc:
            await error_response(exc.status_code, exc.code, exc.message)(scope, receive, send)
            return
        await manager.handle_request(scope, receive, send)


def mount_mcp(app: FastAPI) -> None:
    # A Route (not a Mount) so the endpoint is `/mcp` itself, with no redirect to `/mcp/`.
    app.router.routes.append(Route(MCP_PATH, endpoint=MCPEndpoint(), include_in_schema=False))
