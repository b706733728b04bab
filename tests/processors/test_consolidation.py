from __future__ import annotations

from datetime import date

from app.domain import Fact, FactCategory
from app.processors.composing.consolidation import consolidate, normalise_text

C = FactCategory


def fact(text: str, conv: str, day: int | None, category: FactCategory = C.ABOUT_ME) -> Fact:
    return Fact(category, text, conv, date(2024, 1, day) if day else None)


def test_near_duplicates_merge_keeping_every_source_and_the_fuller_sentence() -> None:
    merged = consolidate(
        [
            fact("The user lives in Berlin, Germany.", "c2", 20),
            fact("the user lives in Berlin", "c1", 5),
            fact("The user  lives in Berlin.", "c3", 9),
        ]
    )
    assert len(merged) == 1
    only = merged[0]
    assert only.text == "The user lives in Berlin, Germany."
    assert set(only.sources) == {"c1", "c2", "c3"}
    assert (only.first_date, only.last_date, only.count) == (date(2024, 1, 5), date(2024, 1, 20), 3)


def test_different_facts_stay_apart() -> None:
    merged = consolidate(
        [
            fact("The user lives in Berlin.", "c1", 1),
            fact("The user lives in Paris.", "c2", 2),
            fact("The user works as a nurse.", "c3", 3),
            fact("The user lives in Berlin.", "c4", 4, C.PREFERENCES),  # another category
        ]
    )
    assert len(merged) == 4


def test_negation_and_numbers_block_a_merge() -> None:
    merged = consolidate(
        [
            fact("The user likes coffee.", "c1", 1, C.PREFERENCES),
            fact("The user does not like coffee.", "c2", 2, C.PREFERENCES),
            fact("The user is 34 years old.", "c3", 3),
            fact("The user is 35 years old.", "c4", 4),
            fact("The user has a dog named Rex.", "c5", 5, C.PEOPLE),
            fact("The user has a dog named Max.", "c6", 6, C.PEOPLE),
        ]
    )
    assert len(merged) == 6


def test_a_rewording_merges_and_the_newer_wording_wins() -> None:
    merged = consolidate(
        [
            fact("The user lived in Leeds with a partner.", "c1", 1),
            fact("The user lives in Leeds with a partner.", "c2", 8),
        ]
    )
    assert [(m.text, m.count) for m in merged] == [("The user lives in Leeds with a partner.", 2)]


def test_newest_first_and_newer_wording_wins() -> None:
    merged = consolidate(
        [
            fact("The user works as a nurse in Leeds.", "c1", 1),
            fact("The user works as a senior nurse in Leeds.", "c2", 9),
            fact("The user has a cat.", "c3", None, C.PEOPLE),
            fact("The user is vegan.", "c4", 5),
        ]
    )
    assert [m.text for m in merged] == [
        "The user works as a senior nurse in Leeds.",
        "The user is vegan.",
        "The user has a cat.",
    ]


def test_signal_flag_survives_a_merge() -> None:
    merged = consolidate(
        [
            Fact(C.ABOUT_ME, "The user is a nurse.", "c1", None, from_signal=True),
            fact("The user is a nurse", "c2", 3),
        ]
    )
    assert len(merged) == 1
    assert merged[0].from_signal


def test_normalise_text() -> None:
    assert normalise_text("  - the user  likes tea ") == "The user likes tea."
    assert normalise_text("   ") == ""


def test_a_sentence_ending_inside_its_quote_gets_no_extra_full_stop() -> None:
    from app.processors.composing.consolidation import normalise_text

    assert normalise_text('The user wrote: "No emoji, please."') == (
        'The user wrote: "No emoji, please."'
    )
    assert normalise_text('The user calls it "the studio"') == 'The user calls it "the studio".'
