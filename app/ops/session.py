"""The ops page's session cookie and CSRF tokens, signed with a key derived from RLM_API_KEY.

A cookie is `v1.<session id>.<expiry, epoch seconds>.<HMAC-SHA256 of the rest>`: nothing is kept
on the server, so every instance behind one address accepts it, and changing RLM_API_KEY ends
every session at once. A form's CSRF token is an HMAC of the session id under the same key (a
different message, so a token is never a valid signature): a page of another site can neither
read it nor, the cookie being SameSite=Strict, make the browser send the cookie with its POST.

Without a key (local embedded defaults) the signing key is random for the process: sessions end
when it restarts, which is all a page open on localhost needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.config import Settings

__all__ = ["COOKIE_NAME", "Session", "SessionSigner"]

COOKIE_NAME = "rlm_ops_session"
_VERSION = "v1"
_DERIVE = b"soulprint-rlm ops session v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    expires: int  # epoch seconds


class SessionSigner:
    def __init__(
        self, key: bytes, *, lifetime_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self.lifetime_s = int(lifetime_s)
        self._clock = clock

    @classmethod
    def for_settings(cls, settings: Settings) -> SessionSigner:
        secret = settings.rlm_api_key
        if secret is None:
            key = secrets.token_bytes(32)
        else:
            key = hmac.new(secret.get_secret_value().encode(), _DERIVE, hashlib.sha256).digest()
        return cls(key, lifetime_s=settings.ops_session_hours * 3600)

    def _mac(self, message: str) -> str:
        return _b64(hmac.new(self._key, message.encode(), hashlib.sha256).digest())

    def issue(self) -> tuple[Session, str]:
        """A new session and its cookie value."""
        session = Session(secrets.token_urlsafe(18), int(self._clock()) + self.lifetime_s)
        body = f"{_VERSION}.{session.id}.{session.expires}"
        return session, f"{body}.{self._mac(body)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None if it is missing, forged, altered or expired."""
        if not cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        version, _, rest = body.partition(".")
        session_id, _, expires = rest.partition(".")
        if version != _VERSION or not session_id or not expires.isdigit():
            return None
        if not hmac.compare_digest(signature.encode(), self._mac(body).encode()):
            return None
        if int(expires) <= self._clock():
            return None
        return Session(session_id, int(expires))

    def csrf_token(self, session: Session) -> str:
        return self._mac(f"csrf.{session.id}")

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(
            (token or "").encode(), self.csrf_token(session).encode()
        )
