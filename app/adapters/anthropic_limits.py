"""A 429 that waiting cannot cure: the request is larger than the organisation's per-minute limit.

Anthropic answers 429 `rate_limit_error` both when the minute's budget is used up (waiting helps)
and when one request alone needs more than the whole minute allows ("This request would exceed the
rate limit for your organization … of 50,000 input tokens per minute … Please reduce the prompt
length or the maximum tokens requested"): the second is refused every time. The response states
the limits (`anthropic-ratelimit-{input,output}-tokens-limit`, and the message names the one that
refused), and we know the request: its input tokens by our estimate, its `max_tokens`. It is
hopeless when it needs more than a stated limit, or when the limit the message names refused it
with its bucket full (`…-remaining` at the limit: nothing else was using that minute, so the
request is larger than our estimate says).

`SkipHopelessRetries` marks such a response `x-should-retry: false`, which the SDK obeys: it is
raised at once instead of after `max_retries` waits. `overrun` tells `translate_error` to make it
`LLMRequestTooLarge` (permanent for that request), not `LLMUnavailable` (the breaker waits).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
from anthropic import APIRequest, AsyncAPIResponse, AsyncCallNext

from app.processors.reading.text import estimate_tokens

__all__ = ["Overrun", "RequestSize", "SkipHopelessRetries", "overrun"]

Kind = Literal["input", "output"]
_KINDS: tuple[Kind, ...] = ("input", "output")
# "… of 50,000 input tokens per minute", "… rate limit of 30,000 input tokens per minute".
_NAMED_LIMIT = re.compile(r"of ([\d,]+) (input tokens|output tokens|requests) per minute")


def _text(content: Any) -> str:
    """A `system` or message `content`: a string, or a list of blocks with text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping))
    return ""


@dataclass(frozen=True, slots=True)
class RequestSize:
    input_tokens: int  # our estimate (UTF-8 bytes / 4) of system, messages and tools
    max_tokens: int

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> RequestSize:
        messages = params.get("messages") or []
        text = [_text(params.get("system"))]
        text += [_text(m.get("content")) for m in messages if isinstance(m, Mapping)]
        tools = params.get("tools")
        tokens = sum(estimate_tokens(t) for t in text)
        if tools:
            tokens += estimate_tokens(json.dumps(tools, default=str))
        return cls(input_tokens=tokens, max_tokens=int(params.get("max_tokens") or 0))


@dataclass(frozen=True, slots=True)
class Overrun:
    """The limit a request can never fit: what it needs against what the minute allows."""

    kind: Kind
    need: int
    limit: int

    @property
    def larger_than_estimated(self) -> bool:
        """Refused with the bucket full although our estimate fits: the estimate ran low."""
        return self.need <= self.limit


def _int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def overrun(size: RequestSize, headers: Mapping[str, str], message: str) -> Overrun | None:
    """Which per-minute limit this 429'd request can never fit, or None when waiting may help."""
    named = _NAMED_LIMIT.search(message or "")
    named_kind = named[2].split()[0] if named else None
    for kind in _KINDS:
        need = size.input_tokens if kind == "input" else size.max_tokens
        limit = _int(headers, f"anthropic-ratelimit-{kind}-tokens-limit")
        if limit is None and named is not None and named_kind == kind:
            limit = int(named[1].replace(",", ""))
        if limit is None or limit <= 0:
            continue
        if need > limit:
            return Overrun(kind, need, limit)
        remaining = _int(headers, f"anthropic-ratelimit-{kind}-tokens-remaining")
        if named_kind == kind and remaining is not None and remaining >= limit:
            return Overrun(kind, need, limit)
    return None


def _message(body: Any) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("message") or "")
    return ""


class SkipHopelessRetries(anthropic.Middleware):
    """Per attempt, inside the SDK's retry loop: a 429 for a request that can never fit is
    marked `x-should-retry: false`, so the SDK raises it now instead of retrying it."""

    async def handle_async(
        self, request: APIRequest, call_next: AsyncCallNext
    ) -> AsyncAPIResponse[Any]:
        response = await call_next(request)
        params = request.json
        if response.status_code != 429 or not isinstance(params, Mapping):
            return response
        if "messages" not in params:
            return response  # not a Messages request (a batch, say): nothing of ours to size
        http = response.http_response
        try:
            await http.aread()
            body = http.json()
        except ValueError:
            body = None
        if overrun(RequestSize.of(params), http.headers, _message(body)) is not None:
            http.headers["x-should-retry"] = "false"
        return response
