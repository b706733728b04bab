"""Fixtures for the ops page: the app on the real local store, reached over ASGI as a browser on
this machine would (Host 127.0.0.1, a loopback client), or from elsewhere."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

__all__ = ["LOCAL", "csrf_of", "ops_client"]

LOCAL = "http://127.0.0.1:8000"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@asynccontextmanager
async def ops_client(
    app: FastAPI, *, base_url: str = LOCAL, client: tuple[str, int] = ("127.0.0.1", 50123)
) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan, and a client with a cookie jar (the session cookie is kept)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, "the page carries no form with a CSRF token"
    return found[1]


async def sign_in(http: httpx.AsyncClient, key: str, **extra: Any) -> httpx.Response:
    return await http.post("/ops/login", data={"key": key, **extra})
