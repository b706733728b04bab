from __future__ import annotations

import json
from typing import Any

import pytest

from app.errors import LLMBadOutput
from app.pricing import ModelPrice
from app.processors.composing.sections import (
    AI_NAMES,
    derive_ai_name,
    regenerate_sections,
    render_soulprint_text,
    section_columns,
)
from app.processors.ledger import CostLedger
from app.sections import NO_DATA, SectionSet

PRICE = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)
MEMORY = "## About Me\n- The user lives in Leeds.\n\n## People\n- Nothing recorded yet."
from tests.support.fakes import ScriptedLLM  # noqa: E402


def full_reply(ai_name: str = "Wren") -> dict[str, Any]:
    return {
        "soul": {"communication_style": "Direct", "personality_traits": ["curious", "dry"]},
        "identity": {"ai_name": ai_name, "archetype": "Guide"},
        "user": {"location": "Leeds", "interests": ["boats"]},
        "agents": {"response_style": "Short"},
        "tools": {"likely_usage": ["coding"]},
    }


def ledger() -> CostLedger:
    return CostLedger(PRICE, "fake", "fake-model")


TIER_1 = 50_000


def sampler(sizes: list[int], chars: int) -> Any:
    def render(*, limit: int, max_tokens: int) -> str:
        sizes.append(limit)
        return "x" * (chars if limit == 200 else chars // 2)

    return render


def fixed(text: str) -> Any:
    return lambda *, limit, max_tokens: text


async def test_valid_reply_becomes_sections_with_every_field() -> None:
    sizes: list[int] = []
    llm = ScriptedLLM(sections=[full_reply()])
    out = await regenerate_sections(
        render_sample=sampler(sizes, 1000),
        memory_md=MEMORY,
        llm=llm,
        ledger=ledger(),
        input_tokens_per_minute=TIER_1,
    )
    assert sizes == [200]
    assert out.identity.ai_name == "Wren"
    assert out.user.location == "Leeds"
    assert out.user.name == NO_DATA
    assert out.tools.capabilities_emphasis == []
    assert llm.requests["write_sections"][0].memory_md == MEMORY


async def test_sample_falls_back_to_100_when_too_big_for_the_context() -> None:
    sizes: list[int] = []
    llm = ScriptedLLM(sections=[full_reply()])
    await regenerate_sections(
        render_sample=sampler(sizes, 800_000),
        memory_md=MEMORY,
        llm=llm,
        ledger=ledger(),
        input_tokens_per_minute=TIER_1,
        context_tokens=200_000,
    )
    assert sizes == [200, 100]
    assert len(llm.requests["write_sections"][0].conversations) == 400_000


async def test_the_sample_holds_the_configured_number_of_conversations() -> None:
    """V2_SAMPLE_SIZE, as `inspect` renders it: not a number of the function's own."""
    sizes: list[int] = []
    await regenerate_sections(
        render_sample=sampler(sizes, 800_000),
        memory_md=MEMORY,
        llm=ScriptedLLM(sections=[full_reply()]),
        ledger=ledger(),
        input_tokens_per_minute=TIER_1,
        sample_limit=60,
        context_tokens=50_000,
    )
    assert sizes == [60, 30]


@pytest.mark.parametrize(
    "first",
    [LLMBadOutput("not JSON"), {"soul": {}}, "not a dict"],
    ids=["bad-json", "missing-sections", "not-object"],
)
async def test_one_retry_with_a_correction(first: Any) -> None:
    llm = ScriptedLLM(sections=[first, full_reply()])
    out = await regenerate_sections(
        render_sample=fixed("sample"),
        memory_md=MEMORY,
        llm=llm,
        ledger=ledger(),
        input_tokens_per_minute=TIER_1,
    )
    assert out.identity.ai_name == "Wren"
    assert llm.calls["write_sections"] == 2
    assert llm.requests["write_sections"][1].correction


async def test_two_invalid_replies_raise() -> None:
    llm = ScriptedLLM(sections=[LLMBadOutput("not JSON")])
    with pytest.raises(LLMBadOutput, match="not valid twice"):
        await regenerate_sections(
            render_sample=fixed("sample"),
            memory_md=MEMORY,
            llm=llm,
            ledger=ledger(),
            input_tokens_per_minute=TIER_1,
        )
    assert llm.calls["write_sections"] == 2


@pytest.mark.parametrize("generic", ["Assistant", "", "AI", "claude", NO_DATA])
async def test_generic_ai_name_is_replaced_deterministically(generic: str) -> None:
    llm = ScriptedLLM(sections=[full_reply(ai_name=generic)])
    out = await regenerate_sections(
        render_sample=fixed("s"),
        memory_md=MEMORY,
        llm=llm,
        ledger=ledger(),
        input_tokens_per_minute=TIER_1,
    )
    assert out.identity.ai_name in AI_NAMES
    assert out.identity.ai_name == derive_ai_name(MEMORY + "s")


def test_soulprint_text_headings_in_order_and_fields() -> None:
    sections = SectionSet.model_validate(full_reply())
    text = render_soulprint_text(sections, "# MEMORY\n\n" + MEMORY)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Communication Style & Personality",
        "## Your AI Identity",
        "## About You",
        "## How I Operate",
        "## My Capabilities",
        "## Memory",
    ]
    assert "**Communication Style:** Direct" in text
    assert "**Personality Traits:**\n- curious\n- dry" in text
    assert "**AI Name:** Wren" in text
    assert f"**Relationships:** {NO_DATA}" in text
    assert "### About Me\n- The user lives in Leeds." in text
    assert "# MEMORY" not in text


def test_section_columns_are_json_of_each_section() -> None:
    sections = SectionSet.model_validate(full_reply())
    columns = section_columns(sections)
    assert sorted(columns) == ["agents_md", "identity_md", "soul_md", "tools_md", "user_md"]
    soul = json.loads(columns["soul_md"])
    assert soul["personality_traits"] == ["curious", "dry"]
    assert soul["humor_style"] == NO_DATA
    assert set(json.loads(columns["tools_md"])) == {
        "likely_usage",
        "capabilities_emphasis",
        "output_preferences",
        "depth_preference",
    }
