from __future__ import annotations

from datetime import date

import pytest

from app.adapters.offline_llm import OFFLINE_MEMORY_NOTE, OfflineLLM
from app.domain import Fact, FactCategory, UserSignal
from app.ports import LLM, Excerpt, ExtractionRequest, MemoryRequest, ReduceRequest, SectionsRequest
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
    return ExtractionRequest.of(Excerpt("c1", "conv", "t", date(2024, 1, 1), text, signals))


def test_is_an_llm_and_says_what_it_is() -> None:
    llm: LLM = OfflineLLM()
    assert (llm.provider, llm.model) == ("offline", "offline-rules-v2")


async def test_first_person_statements_become_facts_in_their_category() -> None:
    reply = await OfflineLLM().extract_facts(request())
    got = {(f.category, f.text) for f in reply.value.facts[0]}
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
    texts = {f.text: f.category for f in reply.value.facts[0]}
    assert texts["The user is a nurse in Leeds."] is C.ABOUT_ME
    assert texts["The user has a dog named Rex."] is C.PEOPLE
    assert any(c is C.PREFERENCES and "keep answers short" in t for t, c in texts.items())
    assert all(f.from_signal for f in reply.value.facts[0])


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


# The noise a newcomer saw on the bundled sample export (issue 10), one test each.


async def test_dated_deadlines_and_events_are_important_dates() -> None:
    text = (
        "User: Our studio is entering the Tejo riverside park competition. I'm leading the "
        "planting strategy and the deadline is 15 June 2026.\n\n"
        "User: My goal is to pass JLPT N3 in December 2026. My book manuscript is due on "
        "8 February 2026. Reminder: my dad's 70th birthday party, 19 October 2025."
    )
    reply = await OfflineLLM().extract_facts(request(text))
    assert [(f.category, f.text) for f in reply.value.facts[0]] == [
        (
            C.IMPORTANT_DATES,
            "The user is leading the planting strategy and the deadline is 15 June 2026.",
        ),
        (C.IMPORTANT_DATES, "The user's goal is to pass JLPT N3 in December 2026."),
        # "my book …" is also a project sentence: the date decides
        (C.IMPORTANT_DATES, "The user's book manuscript is due on 8 February 2026."),
        (C.IMPORTANT_DATES, "The user's dad's 70th birthday party, 19 October 2025."),
    ]


async def test_no_date_without_a_number_a_year_or_the_user() -> None:
    text = (
        "User: I may 2 things later. The conference is on 3 June 2026. If my deadline is "
        "15 June 2026 I will panic. I have 12 dec crates in march 5000."
    )
    assert (await OfflineLLM().extract_facts(request(text))).value.facts == ([],)


async def test_a_liking_that_points_back_into_the_conversation_is_no_fact() -> None:
    text = (
        "User: I like the second one. I love it. I like that idea a lot. "
        "I like reading manga about gardening though."
    )
    reply = await OfflineLLM().extract_facts(request(text))
    assert [f.text for f in reply.value.facts[0]] == [
        "The user likes reading manga about gardening though."
    ]


async def test_interests_are_likings_and_recurring_topics_not_one_conversations_words() -> None:
    sample = "\n".join(
        [
            '=== Conversation: "Pitch for the riverside park competition" (2026-05-01) ===',
            "User: Our studio is entering the riverside park competition.",
            '=== Conversation: "Japanese study routine" (2026-02-10) ===',
            "User: I study Japanese every morning before work.",
            '=== Conversation: "Japanese reading practice" (2026-03-10) ===',
            "User: Which Japanese graded readers are good?",
        ]
    )
    memory = "## Preferences\n- The user likes reading manga about gardening though.\n"
    reply = await OfflineLLM().write_sections(SectionsRequest(sample, memory))
    assert reply.value["user"]["interests"] == ["reading manga about gardening", "japanese"]


@pytest.mark.parametrize(
    ("sentence", "fact"),
    [
        (
            "My partner Tomás wants a small herb corner, so we need at least one sunnier pot.",
            "The user's partner is Tomás.",
        ),
        ("Jonas and I have been together for six years.", "Jonas is the user's partner."),
        ("I'm married to Jonas.", "The user is married to Jonas."),
        ("My wife Priya is a nurse.", "The user's wife Priya is a nurse."),
    ],
)
async def test_a_named_partner_is_in_people(sentence: str, fact: str) -> None:
    reply = await OfflineLLM().extract_facts(request(f"User: {sentence}"))
    assert [(f.category, f.text) for f in reply.value.facts[0]] == [(C.PEOPLE, fact)]


async def test_a_capitalised_filler_is_not_a_name() -> None:
    reply = await OfflineLLM().extract_facts(request("User: My partner And me, we argue."))
    assert not any("is And" in f.text for f in reply.value.facts[0])


async def test_how_i_want_answers_is_a_preference() -> None:
    signal = UserSignal(
        "custom_instructions",
        "About me: I cycle everywhere.\nHow I want answers: Be concise. No emoji, please.",
        "c",
    )
    reply = await OfflineLLM().extract_facts(request("", (signal,)))
    got = {(f.category, f.text) for f in reply.value.facts[0]}
    assert (C.PREFERENCES, 'The user wants answers like this: "No emoji, please."') in got
    assert (C.PREFERENCES, 'The user wants answers like this: "Be concise."') in got
    assert (C.ABOUT_ME, 'The user wrote about themselves: "I cycle everywhere."') in got


async def test_one_fact_is_written_under_one_heading() -> None:
    note = "The user is redesigning her courtyard with reclaimed terracotta pots from her "
    note += "grandmother's house in Sintra."
    own = "The user decided to use reclaimed terracotta pots from their grandmother's house in "
    own += "Sintra."
    facts = (
        Fact(C.ABOUT_ME, note, from_signal=True),
        Fact(C.ABOUT_ME, "The user is a landscape architect based in Lisbon."),
        Fact(C.ABOUT_ME, "The user is a landscape architect in Lisbon and likes courtyards."),
        Fact(C.DECISIONS_CONTEXT, own),
        Fact(C.PEOPLE, "The user's mother is vegetarian."),
        Fact(C.PREFERENCES, "The user is vegetarian and likes lentils."),
    )
    memory = (await OfflineLLM().write_memory(MemoryRequest(facts))).value
    assert note not in memory  # the keyword-classified paraphrase under About Me goes
    assert own in memory
    # under one heading, near-repeats are consolidation's business; short facts never merge
    assert "based in Lisbon" in memory
    assert "likes courtyards" in memory
    assert "mother is vegetarian" in memory
    assert memory_problems(memory, facts) == []


async def test_a_repeat_never_empties_a_heading() -> None:
    shorter = "The user is learning Japanese with graded readers."
    fuller = "The user enjoys learning Japanese with graded readers every morning."
    alone = (Fact(C.PROJECTS, shorter), Fact(C.ABOUT_ME, fuller))
    memory = (await OfflineLLM().write_memory(MemoryRequest(alone))).value
    assert memory.count("graded readers") == 2  # either would empty its heading
    # the shorter one would go, but it is all Projects has: the other goes instead
    facts = (Fact(C.PROJECTS, shorter), Fact(C.PREFERENCES, fuller), Fact(C.PREFERENCES, "Tea."))
    memory = (await OfflineLLM().write_memory(MemoryRequest(facts))).value
    assert memory_problems(memory, facts) == []
    assert shorter in memory
    assert fuller not in memory
