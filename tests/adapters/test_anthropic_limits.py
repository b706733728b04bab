"""A 429 for a request that can never fit the organisation's per-minute limits: read from the
response (headers, or the message), not retried by the SDK, and `LLMRequestTooLarge` — while an
ordinary 429 stays `LLMUnavailable` (the breaker waits it out)."""

from __future__ import annotations

import anthropic
import httpx
import pytest
import respx

from app.adapters.anthropic_limits import Overrun, RequestSize, overrun
from app.adapters.anthropic_llm import AnthropicLLM
from app.errors import LLMRequestTooLarge, LLMUnavailable
from app.ports import SectionsRequest
from tests.support.sdk_router import sdk_client

MODEL = "claude-haiku-4-5-20251001"
URL = "https://api.anthropic.com/v1/messages"
# The API's words (the organisation id left out), the same whether waiting helps or not.
REFUSAL = (
    "This request would exceed the rate limit for your organization of {limit} {unit} per "
    "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
    "response headers for current usage. Please reduce the prompt length or the maximum tokens "
    "requested, or try again later."
)
TIER_1 = {
    "anthropic-ratelimit-input-tokens-limit": "50000",
    "anthropic-ratelimit-output-tokens-limit": "10000",
}
BIG = SectionsRequest(conversations="User: " + "word " * 200_000, memory_md="")  # ~250K tokens
SMALL = SectionsRequest(conversations="User: hi", memory_md="")


def _refusal(*, unit: str = "input tokens", limit: str = "50,000") -> str:
    return REFUSAL.format(limit=limit, unit=unit)


# --- reading the response ---------------------------------------------------------------------


def test_the_request_size_is_our_estimate_of_system_messages_and_tools() -> None:
    params = {
        "system": "s" * 400,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "u" * 800}]}],
        "tools": [{"name": "t"}],
        "max_tokens": 4096,
    }
    size = RequestSize.of(params)
    assert size == RequestSize(input_tokens=100 + 200 + 4, max_tokens=4096)


@pytest.mark.parametrize(
    ("size", "headers", "message", "expected"),
    [
        # Larger than the stated input limit: by the header, or by the message alone.
        (RequestSize(150_000, 4096), TIER_1, "", Overrun("input", 150_000, 50_000)),
        (RequestSize(150_000, 4096), {}, _refusal(), Overrun("input", 150_000, 50_000)),
        # max_tokens beyond the output limit.
        (RequestSize(1_000, 16_384), TIER_1, "", Overrun("output", 16_384, 10_000)),
        (
            RequestSize(1_000, 16_384),
            {},
            _refusal(unit="output tokens", limit="10,000"),
            Overrun("output", 16_384, 10_000),
        ),
        # Refused with the named bucket full: larger than our estimate says.
        (
            RequestSize(45_000, 4096),
            {**TIER_1, "anthropic-ratelimit-input-tokens-remaining": "50000"},
            _refusal(),
            Overrun("input", 45_000, 50_000),
        ),
        # The minute is merely used up: waiting helps.
        (
            RequestSize(45_000, 4096),
            {**TIER_1, "anthropic-ratelimit-input-tokens-remaining": "3000"},
            _refusal(),
            None,
        ),
        # A bucket full but another one named: not this request's size.
        (
            RequestSize(45_000, 4096),
            {**TIER_1, "anthropic-ratelimit-input-tokens-remaining": "50000"},
            _refusal(unit="requests", limit="50"),
            None,
        ),
        # Nothing stated: no grounds to call it hopeless.
        (RequestSize(150_000, 4096), {}, "Number of request tokens has exceeded your limit", None),
    ],
    ids=[
        "input-header",
        "input-message",
        "output-header",
        "output-message",
        "refused-full",
        "minute-used-up",
        "other-bucket",
        "nothing-stated",
    ],
)
def test_overrun(
    size: RequestSize, headers: dict[str, str], message: str, expected: Overrun | None
) -> None:
    assert overrun(size, headers, message) == expected


# --- through the real SDK ---------------------------------------------------------------------


def _429(message: str, **headers: str) -> httpx.Response:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": message}}
    return httpx.Response(
        429,
        json=body,
        headers={"request-id": "req_429", "retry-after-ms": "1", **TIER_1, **headers},
    )


async def test_a_request_larger_than_the_minute_is_asked_once_and_says_what_to_set() -> None:
    router = respx.Router(assert_all_called=False)
    route = router.post(URL).mock(return_value=_429(_refusal()))
    adapter = AnthropicLLM(sdk_client(router, max_retries=4), model=MODEL)
    with pytest.raises(LLMRequestTooLarge) as caught:
        await adapter.write_sections(BIG)
    await adapter.aclose()
    assert route.call_count == 1, "the SDK did not retry it"
    message = caught.value.message
    assert "is larger than the organisation's limit of 50,000 input tokens a minute" in message
    assert "set ANTHROPIC_INPUT_TOKENS_PER_MINUTE to 50,000" in message
    assert "request id req_429" in message
    assert caught.value.reason == "request too large for the rate limit"


async def test_a_request_refused_with_the_minute_unused_is_too_large_too() -> None:
    router = respx.Router(assert_all_called=False)
    full = {"anthropic-ratelimit-input-tokens-remaining": "50000"}
    route = router.post(URL).mock(return_value=_429(_refusal(), **full))
    adapter = AnthropicLLM(sdk_client(router, max_retries=4), model=MODEL)
    with pytest.raises(LLMRequestTooLarge, match="larger than estimated"):
        await adapter.write_sections(SMALL)
    await adapter.aclose()
    assert route.call_count == 1


async def test_an_ordinary_429_is_still_retried_and_waited_out() -> None:
    router = respx.Router(assert_all_called=False)
    used_up = {"anthropic-ratelimit-input-tokens-remaining": "2000"}
    route = router.post(URL).mock(return_value=_429(_refusal(), **used_up))
    adapter = AnthropicLLM(sdk_client(router, max_retries=2), model=MODEL)
    with pytest.raises(LLMUnavailable, match="rate limited"):
        await adapter.write_sections(SMALL)
    await adapter.aclose()
    assert route.call_count == 3


async def test_a_batch_429_is_not_sized_and_still_retried() -> None:
    router = respx.Router(assert_all_called=False)
    full = {"anthropic-ratelimit-input-tokens-remaining": "50000"}
    route = router.post(f"{URL}/batches").mock(return_value=_429(_refusal(), **full))
    adapter = AnthropicLLM(sdk_client(router, max_retries=2), model=MODEL)
    with pytest.raises(anthropic.RateLimitError):  # the client batches() uses: middleware and all
        await adapter._client.messages.batches.create(requests=[])
    await adapter.aclose()
    assert route.call_count == 3
