"""Every request fits ANTHROPIC_INPUT_TOKENS_PER_MINUTE: v2's sample is cut to what one request may
carry (whole conversations, richest first), and settings that make another request impossible stop
the service at startup, saying what to change."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.adapters.anthropic_limits import RequestSize
from app.adapters.anthropic_messages import MAX_TOKENS, tool_params
from app.config import Settings
from app.domain import Conversation, Message
from app.errors import ConfigError
from app.main import check_settings
from app.ports import SectionsRequest
from app.pricing import ModelPrice
from app.processors import prompts
from app.processors.composing.sections import regenerate_sections
from app.processors.inspect import inspect_export
from app.processors.ledger import CostLedger
from app.processors.reading.text import estimate_tokens
from app.processors.reading.v2_sample import V2Sampler
from app.processors.request_fit import (
    requests_over_limit,
    sections_sample_tokens,
    usable_input_tokens,
)
from bench.make_export import write_export
from tests.support.fakes import ScriptedLLM

TIER_1 = 50_000
T0 = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
MEMORY = "## About Me\n" + "- The user keeps bees and writes about them.\n" * 400  # ~4,600 tokens


def _conversation(n: int, *, words: int) -> Conversation:
    roles = ("user", "assistant")
    text = " ".join(f"word{n}-{i}" for i in range(words))
    messages = tuple(Message(roles[i % 2], text, T0) for i in range(6))  # type: ignore[arg-type]
    return Conversation(id=f"c{n:03d}", title=f"Talk {n}", created_at=T0, messages=messages)


def _sampler(count: int = 200, *, words: int = 300) -> V2Sampler:
    """`count` conversations of ~6 × 2,000 characters each (messages are cut at 2,000)."""
    sampler = V2Sampler(200)
    for n in range(count):
        sampler.offer(_conversation(n, words=words + n))
    return sampler


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, anthropic_api_key=SecretStr("sk-test"), **values)  # type: ignore[call-arg]


# --- the v2 sample ----------------------------------------------------------------------------


def test_at_tier_1_the_whole_v2_request_fits_the_limit_with_room_to_spare() -> None:
    sampler = _sampler()
    untrimmed = sampler.fit()
    budget = sections_sample_tokens(
        memory_tokens=estimate_tokens(MEMORY), input_tokens_per_minute=TIER_1
    )
    sample = sampler.fit(max_tokens=budget)
    # The request the adapter would send, as it builds it, with a correction on top.
    request = SectionsRequest(conversations=sample.text, memory_md=MEMORY, correction="x" * 560)
    params = tool_params(
        "write_sections",
        system=prompts.SECTIONS_SYSTEM,
        user=prompts.sections_message(request),
        max_tokens=MAX_TOKENS["write_sections"],
    )
    size = RequestSize.of(params).input_tokens

    assert len(untrimmed.text) > 590_000  # DESIGN's 600,000 characters without the limit
    assert 0 < sample.tokens <= budget
    assert size <= usable_input_tokens(TIER_1) < TIER_1
    # The budget is used, not wasted: less than one more conversation (~3,000 tokens) is left.
    assert size > usable_input_tokens(TIER_1) - 3_500
    assert len(sample.text) < 140_000
    assert sample.left_out == 200 - sample.conversations


def test_the_sample_keeps_whole_conversations_richest_first() -> None:
    sampler = _sampler(20)
    full = sampler.fit().text.split("\n\n=== ")
    sample = sampler.fit(max_tokens=10_000)
    kept = sample.text.split("\n\n=== ")
    assert kept[0] == full[0]  # the richest first
    assert all(part in full for part in kept), "no conversation cut"
    assert sample.conversations == len(kept) < 20
    assert estimate_tokens(sample.text) <= sample.tokens <= 10_000


def test_a_higher_tier_gets_designs_600000_characters() -> None:
    sampler = _sampler()
    memory = estimate_tokens(MEMORY)
    budgets = [
        sections_sample_tokens(memory_tokens=memory, input_tokens_per_minute=limit)
        for limit in (30_000, 50_000, 200_000, 450_000)
    ]
    assert budgets == sorted(budgets)
    assert sampler.fit(max_tokens=budgets[2]).text == sampler.fit().text  # ~200K: all of it
    assert sections_sample_tokens(memory_tokens=40_000, input_tokens_per_minute=TIER_1) == 0


async def test_regeneration_sizes_the_sample_by_memory_and_the_limit() -> None:
    asked: list[tuple[int, int]] = []

    def render(*, limit: int, max_tokens: int) -> str:
        asked.append((limit, max_tokens))
        return '=== Conversation: "Talk" (2024-03-05) ===\nUser: hi'

    for memory in ("", MEMORY):
        reply = {"soul": {}, "identity": {"ai_name": "Wren"}, "user": {}, "agents": {}, "tools": {}}
        llm = ScriptedLLM(sections=[reply])
        await regenerate_sections(
            render_sample=render,
            memory_md=memory,
            llm=llm,
            ledger=CostLedger(ModelPrice(1, 5, 1.25, 0.1), "fake", "fake-model"),
            input_tokens_per_minute=TIER_1,
        )
    expected = [
        (
            200,
            sections_sample_tokens(
                memory_tokens=estimate_tokens(m), input_tokens_per_minute=TIER_1
            ),
        )
        for m in ("", MEMORY)
    ]
    assert asked == expected
    assert asked[0][1] - asked[1][1] == estimate_tokens(MEMORY)


def test_inspect_sizes_v2_as_the_pass_does(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.json", size_mb=1.0, fmt="json", seed=11)
    tier_1 = inspect_export(export, settings=Settings(_env_file=None))  # type: ignore[call-arg]
    tier_2 = inspect_export(
        export,
        settings=Settings(_env_file=None, anthropic_input_tokens_per_minute=450_000),  # type: ignore[call-arg]
    )
    assert tier_1["v2"]["input_tokens_per_minute"] == TIER_1
    assert tier_1["v2"]["conversations_left_out"] > 0
    assert tier_1["v2"]["input_tokens"] <= usable_input_tokens(TIER_1)
    assert tier_2["v2"]["conversations_left_out"] == 0
    assert tier_2["v2"]["input_tokens"] > TIER_1  # what tier 1 would refuse every time
    assert tier_2["estimated_llm_input_tokens"] > tier_1["estimated_llm_input_tokens"]


# --- the other requests, at startup -----------------------------------------------------------


def test_the_defaults_fit_tier_1() -> None:
    assert requests_over_limit(_settings()) == []
    check_settings(_settings(), serving=False)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (
            {"anthropic_input_tokens_per_minute": 30_000},
            "lower FACT_TOKEN_BUDGET to at most 23,368",
        ),
        ({"fact_token_budget": 60_000}, "MEMORY's request reaches ~60,632 input tokens"),
        ({"extraction_request_tokens": 45_000}, "lower EXTRACTION_REQUEST_TOKENS"),
    ],
)
def test_a_request_the_settings_make_impossible_stops_startup(
    values: dict[str, Any], words: str
) -> None:
    settings = _settings(**values)
    with pytest.raises(ConfigError, match="ANTHROPIC_INPUT_TOKENS_PER_MINUTE=") as caught:
        check_settings(settings, serving=False)
    assert words in caught.value.message
    # Offline nothing is sent: no limit to fit.
    check_settings(settings.model_copy(update={"llm_backend": "offline"}), serving=False)
