"""Wire shapes the simulator's modules share: API errors, timestamps, the token estimate."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = [
    "FAULTS",
    "ApiError",
    "error_object",
    "message_object",
    "read_json",
    "request_id",
    "rfc3339",
    "tokens",
]

# The API's errors for a fault outcome: HTTP status, `error.type`, message.
FAULTS: dict[str, tuple[int, str, str]] = {
    "rate_limited": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your rate limit",
    ),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "server_error": (500, "api_error", "Internal server error"),
    # Refusals to bill: not transient (the SDK does not retry them); the service's LLMFatal.
    "no_credit": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
    "payment_required": (402, "billing_error", "Payment required: add a payment method."),
}


class ApiError(Exception):
    """An error the API answers with: HTTP status, `error.type`, message, extra headers."""

    def __init__(
        self, status: int, kind: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers or {}

    def response(self, request_id: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            error_object(self.kind, self.message, request_id),
            status_code=self.status,
            headers={"request-id": request_id, **self.headers, **(headers or {})},
        )


def error_object(kind: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """The API's error body, also a batch's `errored` result's `error`."""
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}


def message_object(
    model: str, content: list[dict[str, Any]], stop_reason: str, input_tokens: int, output: int
) -> dict[str, Any]:
    """A Messages API reply (also a succeeded batch result's `message`)."""
    return {
        "id": f"msg_sim_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def tokens(text: str) -> int:
    """The simulator's token estimate: about four characters a token."""
    return max(1, len(text) // 4)


async def read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "invalid_request_error", f"the body is not JSON: {exc}") from exc


def request_id() -> str:
    return f"req_sim_{uuid.uuid4().hex[:20]}"
