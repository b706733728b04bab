"""Rendering the ops page: Jinja2 templates packaged with the app (autoescaped), the filters
they use, and the headers every page carries (no caching, no framing, a strict CSP: scripts,
styles and images from this app only — the templates use no inline script or style)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from app.ops.access import Viewer
from app.ops.session import COOKIE_NAME
from app.ops.views import describe_error

__all__ = ["SECURITY_HEADERS", "render", "set_session_cookie"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def _ms(value: int | float) -> str:
    return f"{value:.0f} ms" if value < 1000 else _duration(value / 1000)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _detail(detail: dict[str, Any]) -> str:
    """An event's details on one line (already cleaned and bounded when written)."""
    return ", ".join(f"{k}={v}" for k, v in detail.items())


_env = Environment(
    loader=PackageLoader("app.ops", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(duration=_duration, ms=_ms, when=_when, usd=_usd, detail=_detail)
_env.globals["describe_error"] = describe_error


def _secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status_code: int = 200,
    refresh: int = 0,
    **context: Any,
) -> HTMLResponse:
    """The page, with the viewer's CSRF token for its forms, and a new session's cookie."""
    html = _env.get_template(template).render(
        viewer=viewer, csrf=viewer.csrf if viewer else "", refresh=refresh, **context
    )
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    if viewer is not None and viewer.new_cookie is not None:
        set_session_cookie(request, response, viewer.new_cookie, viewer.session.expires)
    return response


def set_session_cookie(request: Request, response: Response, value: str, expires: int) -> None:
    max_age = max(0, expires - int(datetime.now(UTC).timestamp()))
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=max_age,
        path="/ops",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
