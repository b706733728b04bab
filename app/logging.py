"""Structured logs: JSON lines in production, a readable console locally.

Log events, not prose: `log.info("step.completed", step=..., duration_ms=...)`. `user_id`, `job_id`
and `step` are bound with contextvars, so every line a job writes carries them. Conversation text,
prompts and secrets never go into a log line.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Literal

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestIdMiddleware", "configure_logging"]

_REQUEST_ID_HEADER = b"x-request-id"


class _Stderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured (a CLI
    run under a test harness, or a reopened stream, must not leave loggers on a closed file)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    *, log_format: Literal["auto", "json", "console"] = "auto", level: str = "INFO"
) -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # uvicorn and httpx log through the standard library: keep them quiet and on stderr.
    logging.basicConfig(
        level=logging.WARNING, stream=_Stderr(), format="%(name)s %(message)s", force=True
    )
    for noisy in ("httpx", "httpcore", "anthropic", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RequestIdMiddleware:
    """Binds a request id (the caller's `X-Request-ID`, else a new one) to every log line of the
    request and echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(_REQUEST_ID_HEADER, b"").decode("latin-1")
        request_id = incoming[:64] if incoming.strip() else uuid.uuid4().hex
        raw_id = request_id.encode("latin-1", "replace")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((_REQUEST_ID_HEADER, raw_id))
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
