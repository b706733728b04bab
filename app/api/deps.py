"""Dependencies: the services built by the lifespan, and the shared-secret check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.breaker import ProviderBreaker
from app.config import Settings
from app.errors import AuthError
from app.jobs import JobRunner
from app.ports import LLM, Store

__all__ = ["Authorized", "Services", "ServicesDep", "get_services", "require_api_key"]


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request may need, built once by the lifespan."""

    settings: Settings
    store: Store
    llm: LLM
    runner: JobRunner | None
    breaker: ProviderBreaker | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-rlm-api-key")


def require_api_key(request: Request, services: ServicesDep) -> None:
    """`Authorization: Bearer <RLM_API_KEY>` or `X-RLM-API-Key`, compared in constant time.

    With no key configured the API is open; `create_app` only allows that on the local store or
    with ALLOW_UNAUTHENTICATED=true.
    """
    expected = services.settings.rlm_api_key
    if expected is None:
        return
    presented = _presented_key(request)
    if presented is None:
        raise AuthError(
            "missing API key: send 'Authorization: Bearer <RLM_API_KEY>' or 'X-RLM-API-Key'"
        )
    if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        raise AuthError("invalid API key")


Authorized = Depends(require_api_key)
