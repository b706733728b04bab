from __future__ import annotations

from datetime import date

import pytest

from app.domain import Fact, FactCategory
from app.errors import LLMBadOutput, LLMFatal, LLMUnavailable
from app.ports import MemoryRequest
from app.pricing import ModelPrice
from app.processors.composing.consolidation import ConsolidatedFact
from app.processors.composing.memory import generate_memory, memory_problems, render_memory
from app.processors.ledger import CostLedger
from app.processors.prompts import EMPTY_CATEGORY_LINE
from tests.support.fakes import ScriptedLLM

C = FactCategory
PRICE = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)
FACTS = [
    ConsolidatedFact(
        C.ABOUT_ME, "The user lives in Leeds.", ("c1",), None, date(2024, 3, 1), 2, False
    ),
    ConsolidatedFact(C.PEOPLE, "The user's sister is Ada.", ("c2",), None, None, 1, True),
]
HEADINGS = [f"## {c.value}" for c in FactCategory]


def good_reply() -> str:
    body = {C.ABOUT_ME: "- The user lives in Leeds.", C.PEOPLE: "- The user's sister is Ada."}
    return "\n\n".join(f"## {c.value}\n{body.get(c, EMPTY_CATEGORY_LINE)}" for c in FactCategory)


def ledger() -> CostLedger:
    return CostLedger(PRICE, "fake", "fake-model")


def test_render_has_every_heading_in_order_and_says_when_empty() -> None:
    text = render_memory(FACTS)
    positions = [text.index(h) for h in HEADINGS]
    assert positions == sorted(positions)
    assert "- The user lives in Leeds. (2024-03-01)" in text
    assert "- The user's sister is Ada." in text
    assert text.count(EMPTY_CATEGORY_LINE) == 5
    assert memory_problems(text, FACTS) == []


def test_render_accepts_plain_facts_and_a_note() -> None:
    text = render_memory(
        [Fact(C.PROJECTS, "The user builds boats.", "c", date(2023, 5, 2))], note="_offline_"
    )
    assert text.startswith("_offline_\n")
    assert "- The user builds boats. (2023-05-02)" in text


async def test_a_good_reply_is_used() -> None:
    llm = ScriptedLLM(memory=[good_reply()])
    out = await generate_memory(FACTS, llm=llm, ledger=ledger())
    assert (out.source, out.calls) == ("llm", 1)
    assert out.markdown.strip() == good_reply()
    request: MemoryRequest = llm.requests["write_memory"][0]
    assert [f.text for f in request.facts] == [f.text for f in FACTS]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "\n".join(f"{h}\nNo data yet" for h in HEADINGS),
        good_reply().replace("- The user's sister is Ada.", EMPTY_CATEGORY_LINE),
        good_reply().replace("## Projects", "## Work"),
    ],
    ids=["empty", "placeholders-only", "no-data-for-a-category-with-facts", "missing-heading"],
)
async def test_a_bad_reply_gets_one_retry_with_a_correction(bad: str) -> None:
    llm = ScriptedLLM(memory=[bad, good_reply()])
    out = await generate_memory(FACTS, llm=llm, ledger=ledger())
    assert (out.source, out.calls) == ("llm", 2)
    correction = llm.requests["write_memory"][1].correction
    assert correction
    assert "previous MEMORY was not usable" in correction


async def test_two_bad_replies_fall_back_to_the_rendering() -> None:
    llm = ScriptedLLM(memory=["No data yet."])
    out = await generate_memory(FACTS, llm=llm, ledger=ledger())
    assert (out.source, out.calls) == ("fallback", 2)
    assert out.markdown == render_memory(FACTS)
    assert "No data yet" not in out.markdown


async def test_unusable_replies_fall_back_after_one_correction() -> None:
    llm = ScriptedLLM(memory=[LLMBadOutput("cut at max_tokens")])
    out = await generate_memory(FACTS, llm=llm, ledger=ledger())
    assert out.source == "fallback"
    assert llm.calls["write_memory"] == 2
    assert llm.requests["write_memory"][1].correction  # the second ask says what went wrong


async def test_an_unavailable_provider_is_never_a_reason_to_fall_back() -> None:
    """MEMORY from rules is for unusable replies only: an outage propagates (the breaker waits
    it out; without one, the job retries) — it never silently becomes the fallback."""
    unavailable = ScriptedLLM(memory=[LLMUnavailable("529", reason="overloaded")])
    with pytest.raises(LLMUnavailable):
        await generate_memory(FACTS, llm=unavailable, ledger=ledger())
    assert unavailable.calls["write_memory"] == 1
    with pytest.raises(LLMFatal):
        await generate_memory(FACTS, llm=ScriptedLLM(memory=[LLMFatal("bad key")]), ledger=ledger())
