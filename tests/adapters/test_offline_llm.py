from __future__ import annotations

from datetime import date

from app.adapters.offline_llm import OFFLINE_MEMORY_NOTE, OfflineLLM
from app.domain import Fact, FactCategory, UserSignal
from app.ports import LLM, ExtractionRequest, MemoryRequest, ReduceRequest, SectionsRequest
from app.processors.composing.memory import memory_problems
from app.sections import GENERIC_AI_NAMES, SectionSet

C = FactCategory
EXCERPT = (
    "Assistant (context): …which city are you in?\n\n"
    "User: Btw I live in Leeds. My sister Ada is a pilot for a cargo airline. "
    "I'm building a budgeting app for nurses. I hate long intros. What if I live in Paris?\n\n"
    "Assistant (context): …I'm a large language model and I love helping.\n\n"
    "User: I decided to learn Rust this year. I was born on 3 March 1990."
)


def request(text: str = EXCERPT, signals: tuple[UserSignal, ...] = ()) -> ExtractionRequest:
    return ExtractionRequest("c1", "conv", "t", date(2024, 1, 1), text, signals)


def test_is_an_llm_and_says_what_it_is() -> None:
    llm: LLM = OfflineLLM()
    assert (llm.provider, llm.model) == ("offline", "offline-rules-v1")


async def test_first_person_statements_become_facts_in_their_category() -> None:
    reply = await OfflineLLM().extract_facts(request())
    got = {(f.category, f.text) for f in reply.value}
    assert got == {
        (C.ABOUT_ME, "The user lives in Leeds."),
        (C.PEOPLE, "The user's sister Ada is a pilot for a cargo airline."),
        (C.PROJECTS, "The user is building a budgeting app for nurses."),
        (C.PREFERENCES, "The user hates long intros."),
        (C.DECISIONS_CONTEXT, "The user decided to learn Rust this year."),
        (C.IMPORTANT_DATES, "The user was born on 3 March 1990."),
    }
    assert reply.call.usage.input_tokens == len(EXCERPT) // 4
    assert reply.call.usage.output_tokens > 0


async def test_signals_become_facts_marked_as_such() -> None:
    signals = (
        UserSignal("custom_instructions", "I'm a nurse in Leeds.\nPlease keep answers short.", "c"),
        UserSignal("bio", "User has a dog named Rex.", "c"),
    )
    reply = await OfflineLLM().extract_facts(request("", signals))
    texts = {f.text: f.category for f in reply.value}
    assert texts["The user is a nurse in Leeds."] is C.ABOUT_ME
    assert texts["The user has a dog named Rex."] is C.PEOPLE
    assert any(c is C.PREFERENCES and "keep answers short" in t for t, c in texts.items())
    assert all(f.from_signal for f in reply.value)


async def test_reduce_always_shrinks_to_the_target() -> None:
    facts = (
        "The user lives in Leeds.",
        "The user lives in Leeds, England.",
        "The user lives in Leeds.",
        "The user likes tea.",
        "The user likes boats.",
    )
    reply = await OfflineLLM().reduce_facts(ReduceRequest(C.ABOUT_ME, facts, 2))
    assert reply.value == ["The user lives in Leeds, England.", "The user likes tea."]


async def test_memory_is_rendered_from_facts_and_labelled() -> None:
    facts = (Fact(C.ABOUT_ME, "The user lives in Leeds.", "c", date(2024, 1, 1)),)
    reply = await OfflineLLM().write_memory(MemoryRequest(facts))
    assert reply.value.startswith(OFFLINE_MEMORY_NOTE)
    assert "- The user lives in Leeds. (2024-01-01)" in reply.value
    assert memory_problems(reply.value, facts) == []


async def test_sections_from_facts_and_text_statistics() -> None:
    sample = "\n".join(
        [
            '=== Conversation: "Rust borrow checker" (2024-01-02) ===',
            "User: why does this fail? ```fn main() { let x = 1; }```",
            "Assistant: Because ...",
            "User: thanks! how do lifetimes work in rust?",
            "Assistant: Lifetimes ...",
            '=== Conversation: "Rust async" (2024-01-03) ===',
            "User: is tokio better than async-std for rust?",
            "Assistant: It depends.",
        ]
    )
    memory = (
        "## About Me\n- The user's name is Sam.\n- The user lives in Leeds. (2024-01-01)\n"
        "## People\n- The user's sister Ada is a pilot.\n"
        "## Preferences\n- The user hates long intros."
    )
    reply = await OfflineLLM().write_sections(SectionsRequest(sample, memory))
    sections = SectionSet.model_validate(reply.value)
    assert sections.user.name == "Sam"
    assert sections.user.location == "Leeds"
    assert sections.user.relationships == ["The user's sister Ada is a pilot."]
    assert "rust" in sections.user.interests
    assert "technical" in sections.soul.personality_traits
    assert "curious" in sections.soul.personality_traits
    assert "coding and debugging" in sections.tools.likely_usage
    assert sections.identity.ai_name.lower() not in GENERIC_AI_NAMES
    assert "offline rule-based analysis" in sections.agents.memory_directives
    assert sections.agents.do_not
    again = await OfflineLLM().write_sections(SectionsRequest(sample, memory))
    assert again.value == reply.value


async def test_sections_read_occupation_and_location_from_memory() -> None:
    from app.adapters.offline_llm import OfflineLLM
    from app.ports import SectionsRequest

    memory = (
        "## About Me\n\n- The user is a landscape architect in Lisbon.\n"
        "- The user lives in Lisbon.\n"
    )
    reply = await OfflineLLM().write_sections(
        SectionsRequest(conversations="User: hello there\nAssistant: hi", memory_md=memory)
    )
    user = reply.value["user"]
    assert user["occupation"] == "a landscape architect"
    assert user["location"] == "Lisbon"


async def test_custom_instructions_give_a_name_and_who_they_are() -> None:
    from app.adapters.offline_rules import facts_from_signals
    from app.domain import UserSignal

    signal = UserSignal(
        kind="custom_instructions",
        text="About me: I'm Maya, a landscape architect based in Lisbon. I'm tired, a bit.",
        conversation_id="c1",
    )
    texts = [fact.text for fact in facts_from_signals([signal])]
    assert "The user's name is Maya." in texts
    assert "The user is a landscape architect based in Lisbon." in texts
    assert not any("name is tired" in text.lower() for text in texts)
