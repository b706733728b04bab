"""Who may see and steer the ops page.

- RLM_API_KEY set: sign in with it (a form), which sets a signed, HttpOnly, SameSite=Strict
  session cookie on `/ops`. The API's header auth is untouched.
- No key and not ALLOW_UNAUTHENTICATED (the local embedded defaults): open, but only to this
  machine — the Host must name a loopback address (so another site's page cannot reach it by DNS
  rebinding) and the client must be one, as the MCP endpoint does.
- No key with ALLOW_UNAUTHENTICATED: open, like the API (something else guards the service).

In every mode a POST needs the session cookie (issued with the first page when no sign-in is
needed) and the form's CSRF token for it, and its Origin, when sent, must be this host.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Form, Request

from app.config import Settings
from app.ops.session import COOKIE_NAME, Session, SessionSigner

__all__ = [
    "AccessMode",
    "OpsDenied",
    "OpsState",
    "SignInNeeded",
    "Viewer",
    "check_origin",
    "form_viewer",
    "page_viewer",
    "safe_next",
]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class AccessMode(StrEnum):
    SIGN_IN = "sign_in"
    LOCAL = "local"
    OPEN = "open"

    @classmethod
    def of(cls, settings: Settings) -> AccessMode:
        if settings.rlm_api_key is not None:
            return cls.SIGN_IN
        return cls.OPEN if settings.allow_unauthenticated else cls.LOCAL


@dataclass(frozen=True, slots=True)
class OpsState:
    """Built by `mount_ops`, kept on `app.state.ops`."""

    mode: AccessMode
    signer: SessionSigner


class OpsDenied(Exception):
    """Answered with a page that says why (app/ops/routes.py)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class SignInNeeded(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True, slots=True)
class Viewer:
    session: Session
    csrf: str
    mode: AccessMode
    new_cookie: str | None = None  # set on the response: a session issued with this page


def ops_state(request: Request) -> OpsState:
    state: OpsState = request.app.state.ops
    return state


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_local(request: Request, state: OpsState) -> None:
    if state.mode is not AccessMode.LOCAL:
        return
    named = urlsplit("//" + request.headers.get("host", "")).hostname
    client = request.client.host if request.client else None
    if not (_is_loopback(named) and _is_loopback(client)):
        raise OpsDenied(
            403,
            "Without RLM_API_KEY the ops page is open only on this machine: open it at "
            "http://127.0.0.1:<port>/ops, or set RLM_API_KEY to sign in from elsewhere.",
        )


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a page of /ops, never another site."""
    if path and path.startswith("/ops") and not path.startswith("//") and "\\" not in path:
        return path
    return "/ops"


def check_origin(request: Request) -> None:
    """A browser names the page a POST comes from: it must be this site (when it says)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise OpsDenied(403, "This form came from another site; nothing was changed.")


State = Annotated[OpsState, Depends(ops_state)]


def page_viewer(request: Request, state: State) -> Viewer:
    """For a page (GET): the session, or a new one where no sign-in is needed."""
    _check_local(request, state)
    session = state.signer.read(request.cookies.get(COOKIE_NAME))
    cookie = None
    if session is None:
        if state.mode is AccessMode.SIGN_IN:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInNeeded(safe_next(target))
        session, cookie = state.signer.issue()
    return Viewer(session, state.signer.csrf_token(session), state.mode, cookie)


def form_viewer(
    request: Request, state: State, csrf: Annotated[str | None, Form()] = None
) -> Viewer:
    """For a form's POST: an existing session, the form's token for it, this site's origin."""
    _check_local(request, state)
    check_origin(request)
    session = state.signer.read(request.cookies.get(COOKIE_NAME))
    if session is None:
        if state.mode is AccessMode.SIGN_IN:
            raise SignInNeeded("/ops")
        raise OpsDenied(403, "Your session has ended: reload the page and try again.")
    if not state.signer.csrf_ok(session, csrf):
        raise OpsDenied(
            403, "This form has expired or did not come from this page: reload and try again."
        )
    return Viewer(session, state.signer.csrf_token(session), state.mode)
