"""AnthropicLLM through the real SDK, its HTTP answered by a respx router
(tests/support/sdk_router.py: the SDK's request building, retries and error classes all run
for real)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
import respx
from pydantic import SecretStr
from structlog.testing import capture_logs

from app.adapters.anthropic_llm import MAX_TOKENS, AnthropicLLM, extraction_max_tokens
from app.config import Settings
from app.domain import Fact, FactCategory, UserSignal
from app.errors import LLMBadOutput, LLMError, LLMFatal, LLMRefused, LLMUnavailable
from app.ports import Excerpt, ExtractionRequest, MemoryRequest, ReduceRequest, SectionsRequest
from app.processors import prompts
from app.sections import NO_DATA
from tests.support.sdk_router import sdk_client

MODEL = "claude-haiku-4-5-20251001"
URL = "https://api.anthropic.com/v1/messages"
MOVING = Excerpt(
    chunk_id="c1",
    conversation_id="conv-1",
    title="Moving house",
    date=date(2024, 5, 2),
    text="User: I am moving to Bergen in June with my partner Ana.\nAssistant: Congratulations!",
)
NOTES = Excerpt(
    chunk_id="signals:1",
    conversation_id="conv-1",
    title=None,
    date=None,
    text="",
    signals=(UserSignal(kind="bio", text="Works as a nurse.", conversation_id="conv-1"),),
)
CHUNK = ExtractionRequest.of(MOVING, NOTES)
EMPTY = {"excerpts": [], "no_facts": [1, 2]}


def _message(
    content: list[dict[str, Any]], *, stop_reason: str = "tool_use", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 120, "output_tokens": 40, **usage},
    }


def _tool_reply(name: str, payload: Any, **kw: Any) -> httpx.Response:
    block = {"type": "tool_use", "id": "toolu_1", "name": name, "input": payload}
    return httpx.Response(200, json=_message([block], **kw), headers={"request-id": "req_ok"})


def _error(status: int, kind: str, message: str, **headers: str) -> httpx.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return httpx.Response(
        status,
        json=body,
        headers={"request-id": f"req_{status}", "retry-after-ms": "1", **headers},
    )


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(assert_all_called=False)


@pytest.fixture
async def llm(router: respx.Router) -> AsyncIterator[AnthropicLLM]:
    adapter = AnthropicLLM(sdk_client(router, max_retries=0), model=MODEL)
    yield adapter
    await adapter.aclose()


def _sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


async def test_extract_facts_sends_the_exact_request_and_records_the_call(
    router: respx.Router, llm: AnthropicLLM
) -> None:
    payload = {
        "excerpts": [
            {"id": 1, "facts": [{"category": "About Me", "fact": "The user is moving to Bergen."}]},
            {"id": 2, "facts": [{"category": "About Me", "fact": "The user works as a nurse."}]},
        ],
        "no_facts": [],
    }
    route = router.post(URL).mock(
        return_value=_tool_reply(
            "record_facts", payload, cache_creation_input_tokens=0, cache_read_input_tokens=7
        )
    )
    with capture_logs() as logs:
        reply = await llm.extract_facts(CHUNK)

    body = _sent(route)
    tool = prompts.tool_for("extract_facts")
    assert tool is not None
    assert body["model"] == MODEL
    assert body["max_tokens"] == extraction_max_tokens(CHUNK)
    assert body["system"] == prompts.EXTRACT_SYSTEM
    assert body["tools"] == [tool.param()]
    assert body["tools"][0]["strict"] is True
    assert body["tool_choice"] == {"type": "tool", "name": "record_facts"}
    assert not {"temperature", "top_p", "top_k"} & body.keys()
    user = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "user"
    assert '<excerpt id="1" date="2024-05-02">\n' in user  # short: no title
    assert f"\n{MOVING.text}\n</excerpt>" in user
    # undated after a dated block: says so, rather than inherit the day before
    assert '<user_signals id="2" date="unknown">\n<signal kind="bio">\nWorks as a nurse.\n' in user
    assert "every excerpt id from 1 to 2 once" in user
    assert route.calls[-1].request.headers["authorization"] == "Bearer sk-test"

    assert reply.value.facts == (
        [Fact(category=FactCategory.ABOUT_ME, text="The user is moving to Bergen.")],
        # marked as the user's own words by the stage, which knows the excerpt (Unit.attach)
        [Fact(category=FactCategory.ABOUT_ME, text="The user works as a nurse.")],
    )
    assert reply.value.unknown == 0
    call = reply.call
    assert (call.task, call.model, call.request_id, call.retries) == (
        "extract_facts",
        MODEL,
        "req_ok",
        0,
    )
    assert (call.usage.input_tokens, call.usage.output_tokens) == (120, 40)
    assert call.usage.cache_read_input_tokens == 7
    [event] = [e for e in logs if e["event"] == "llm.call"]
    assert event["request_id"] == "req_ok"
    assert event["input_tokens"] == 120
    assert "Bergen" not in json.dumps(event, default=str)


async def test_reduce_asks_for_tokens_in_proportion_to_the_target(
    router: respx.Router, llm: AnthropicLLM
) -> None:
    route = router.post(URL).mock(
        return_value=_tool_reply("record_merged_facts", {"facts": ["The user has a cat.", " "]})
    )
    small = await llm.reduce_facts(
        ReduceRequest(category=FactCategory.PEOPLE, facts=("a", "b", "c"), target_count=2)
    )
    await llm.reduce_facts(
        ReduceRequest(category=FactCategory.PEOPLE, facts=("a",) * 90, target_count=60)
    )
    assert small.value == ["The user has a cat."]
    first, second = _sent(route, 0), _sent(route, 1)
    assert first["max_tokens"] < second["max_tokens"]
    assert first["tool_choice"]["name"] == "record_merged_facts"
    assert "<target_count>\n2\n</target_count>" in first["messages"][0]["content"]


async def test_write_memory_is_plain_markdown_without_tools(
    router: respx.Router, llm: AnthropicLLM
) -> None:
    text = "## About Me\n- The user lives in Bergen."
    route = router.post(URL).mock(
        return_value=httpx.Response(
            200, json=_message([{"type": "text", "text": f"{text}\n"}], stop_reason="end_turn")
        )
    )
    facts = (Fact(category=FactCategory.ABOUT_ME, text="The user lives in Bergen."),)
    reply = await llm.write_memory(MemoryRequest(facts=facts))
    body = _sent(route)
    assert reply.value == text
    assert "tools" not in body
    assert body["system"] == prompts.MEMORY_SYSTEM
    assert body["max_tokens"] == MAX_TOKENS["write_memory"]


async def test_write_sections_returns_every_field(router: respx.Router, llm: AnthropicLLM) -> None:
    router.post(URL).mock(
        return_value=_tool_reply("record_sections", {"identity": {"ai_name": "Fjord"}})
    )
    reply = await llm.write_sections(SectionsRequest(conversations="User: hi", memory_md=""))
    assert reply.value["identity"]["ai_name"] == "Fjord"
    assert reply.value["user"]["name"] == NO_DATA
    assert reply.value["tools"]["likely_usage"] == []


async def test_a_reply_cut_at_max_tokens_is_not_parsed(
    router: respx.Router, llm: AnthropicLLM
) -> None:
    router.post(URL).mock(return_value=_tool_reply("record_facts", EMPTY, stop_reason="max_tokens"))
    with pytest.raises(LLMBadOutput, match="truncated"):
        await llm.extract_facts(CHUNK)


async def test_a_refusal_is_raised_once_not_retried(router: respx.Router) -> None:
    route = router.post(URL).mock(
        return_value=httpx.Response(200, json=_message([], stop_reason="refusal"))
    )
    adapter = AnthropicLLM(sdk_client(router, max_retries=3), model=MODEL)
    with pytest.raises(LLMRefused):
        await adapter.extract_facts(CHUNK)
    assert route.call_count == 1
    await adapter.aclose()


@pytest.mark.parametrize(
    "payload",
    [
        {"excerpts": [{"id": "1", "facts": [{"category": "Hobbies", "fact": "x"}]}]},
        {"excerpts": [{"id": "1", "facts": "The user likes tea."}]},
        {"facts": []},
    ],
)
async def test_tool_input_outside_the_schema_is_bad_output(
    router: respx.Router, llm: AnthropicLLM, payload: dict[str, Any]
) -> None:
    router.post(URL).mock(return_value=_tool_reply("record_facts", payload))
    with pytest.raises(LLMBadOutput, match="schema"):
        await llm.extract_facts(CHUNK)


async def test_a_reply_without_the_tool_call_is_bad_output(
    router: respx.Router, llm: AnthropicLLM
) -> None:
    router.post(URL).mock(
        return_value=httpx.Response(
            200, json=_message([{"type": "text", "text": "Sure!"}], stop_reason="end_turn")
        )
    )
    with pytest.raises(LLMBadOutput, match="did not call record_facts"):
        await llm.extract_facts(CHUNK)


async def test_a_body_that_is_not_json_is_bad_output(
    router: respx.Router, llm: AnthropicLLM
) -> None:
    router.post(URL).mock(
        return_value=httpx.Response(
            200, content=b'{"id": "msg', headers={"content-type": "application/json"}
        )
    )
    with pytest.raises(LLMBadOutput, match="not a valid message"):
        await llm.extract_facts(CHUNK)


@pytest.mark.parametrize(
    ("response", "error", "words"),
    [
        (_error(401, "authentication_error", "invalid x-api-key"), LLMFatal, "ANTHROPIC_API_KEY"),
        (_error(403, "permission_error", "no access"), LLMFatal, "ANTHROPIC_MODEL"),
        (_error(404, "not_found_error", "model: nope"), LLMFatal, "ANTHROPIC_MODEL"),
        (_error(402, "billing_error", "payment required"), LLMFatal, "credit"),
        (
            _error(400, "invalid_request_error", "Your credit balance is too low to access"),
            LLMFatal,
            "credit balance",
        ),
        (_error(400, "invalid_request_error", "messages: bad"), LLMError, "req_400"),
        (_error(429, "rate_limit_error", "slow down"), LLMUnavailable, "429"),
        (_error(529, "overloaded_error", "Overloaded"), LLMUnavailable, "529"),
        (_error(500, "api_error", "boom"), LLMUnavailable, "500"),
    ],
)
async def test_vendor_errors_become_ours(
    router: respx.Router, response: httpx.Response, error: type[LLMError], words: str
) -> None:
    route = router.post(URL).mock(return_value=response)
    adapter = AnthropicLLM(sdk_client(router, max_retries=1), model=MODEL)
    with pytest.raises(error, match=words) as caught:
        await adapter.extract_facts(CHUNK)
    await adapter.aclose()
    assert type(caught.value) is error
    retried = response.status_code >= 429
    assert route.call_count == (2 if retried else 1)


@pytest.mark.parametrize("failure", [httpx2.ConnectError("refused"), httpx2.ReadTimeout("slow")])
async def test_connection_failures_become_unavailable(failure: Exception) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise failure

    client = anthropic.AsyncAnthropic(
        api_key="sk-test",
        max_retries=0,
        http_client=anthropic.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(handler)),
    )
    adapter = AnthropicLLM(client, model=MODEL)
    with pytest.raises(LLMUnavailable):
        await adapter.extract_facts(CHUNK)
    await adapter.aclose()


async def test_retries_taken_by_the_sdk_are_recorded(router: respx.Router) -> None:
    route = router.post(URL).mock(
        side_effect=[
            _error(429, "rate_limit_error", "slow down"),
            _error(529, "overloaded_error", "Overloaded"),
            _tool_reply("record_facts", EMPTY),
        ]
    )
    adapter = AnthropicLLM(sdk_client(router, max_retries=2), model=MODEL)
    reply = await adapter.extract_facts(CHUNK)
    await adapter.aclose()
    assert reply.value.facts == ([], [])
    assert reply.call.retries == 2
    assert route.call_count == 3


async def test_from_settings_configures_one_client() -> None:
    settings = Settings(
        anthropic_api_key=SecretStr("sk-live"),
        anthropic_base_url="http://127.0.0.1:9",
        anthropic_max_retries=6,
        anthropic_timeout_seconds=12.5,
        anthropic_model="claude-haiku-4-5",
    )
    adapter = AnthropicLLM.from_settings(settings)
    client = adapter._client
    assert (client.api_key, client.max_retries, client.timeout) == ("sk-live", 6, 12.5)
    assert str(client.base_url).startswith("http://127.0.0.1:9")
    assert (adapter.provider, adapter.model) == ("anthropic", "claude-haiku-4-5")
    await adapter.aclose()


def test_from_settings_without_a_key_says_what_to_set() -> None:
    with pytest.raises(LLMFatal, match="ANTHROPIC_API_KEY is not set"):
        AnthropicLLM.from_settings(Settings(anthropic_api_key=None))


async def test_a_reply_that_skips_an_excerpt_or_names_an_unknown_one_says_so(
    router: respx.Router, llm: AnthropicLLM
) -> None:
    fact = {"category": "People", "fact": "The user's partner is Ana."}
    payload = {"excerpts": [{"id": 1, "facts": [fact]}, {"id": 7, "facts": [fact]}], "no_facts": []}
    router.post(URL).mock(return_value=_tool_reply("record_facts", payload))
    with capture_logs() as logs:
        reply = await llm.extract_facts(CHUNK)
    assert reply.value.facts == (
        [Fact(category=FactCategory.PEOPLE, text="The user's partner is Ana.")],
        None,  # excerpt 2 was left out: asked about again by the stage
    )
    assert reply.value.unknown == 1  # "7" is no excerpt of the request: dropped, not guessed
    assert [e["unknown"] for e in logs if e["event"] == "llm.reply_unknown_excerpts"] == [1]


def _excerpt(text: str) -> Excerpt:
    return replace(MOVING, text=text)


def test_the_reply_budget_follows_what_the_excerpts_say_up_to_a_cap() -> None:
    def budget(*excerpts: Excerpt) -> int:
        return extraction_max_tokens(ExtractionRequest(excerpts))

    short, long = _excerpt("User: I like tea."), _excerpt("User: " + "word " * 2_000)
    assert budget(short) < budget(short, short) < budget(long)
    assert budget(short) < 400  # a one-line excerpt reserves a few dozen tokens, not 200
    assert budget(long) == budget(_excerpt("User: " + "word " * 9_000))  # at most 200 an excerpt
    assert budget(*[long] * 100) == 8_192
    notes = replace(NOTES, signals=NOTES.signals * 30)
    assert budget(notes) > 30 * 24  # room for a fact a note, at least


def test_excerpts_without_facts_are_named_once_and_the_unnamed_are_told_apart() -> None:
    fact = {"category": "People", "fact": "The user's partner is Ana."}
    request = ExtractionRequest.of(MOVING, MOVING, MOVING, MOVING)
    reply = prompts.ExtractedFacts.model_validate(
        {"excerpts": [{"id": "#2", "facts": [fact]}], "no_facts": [1, 2, "3", 9]}
    )
    result = prompts.parse_extraction_reply(reply, excerpts=len(request.excerpts))
    assert result.facts == (
        [],
        [Fact(category=FactCategory.PEOPLE, text="The user's partner is Ana.")],  # facts win
        [],
        None,  # named nowhere: asked about again
    )
    assert result.unknown == 1  # 9
