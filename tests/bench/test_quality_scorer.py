from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.quality_score import content_words, memory_lines, recalls, score_memory
from tests.bench.exports import chatgpt_conversation, write_json

MANIFEST: dict[str, Any] = {
    "facts": [
        {"id": "name-0", "kind": "name", "key_terms": [["Maya"]], "heading": "About Me"},
        {
            "id": "deadline-1",
            "kind": "deadline",
            "key_terms": [["grant report"], ["15 June 2026", "2026-06-15"]],
            "heading": "Important Dates",
        },
        {"id": "partner-2", "kind": "partner", "key_terms": [["Priya"]], "heading": "People"},
    ]
}


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return write_json(
        tmp_path / "export.json",
        [
            chatgpt_conversation(
                "c1",
                [
                    ("user", "I live in Leeds and I love my garden."),
                    ("assistant", "You should try kayaking in Norway some day."),
                    ("user", "I adopted a greyhound last spring."),
                    ("assistant", "Lovely."),
                    ("user", "We live near Bristol now."),
                ],
            ),
            chatgpt_conversation(
                "c2",
                [
                    (
                        "user",
                        {
                            "content_type": "user_editable_context",
                            "user_profile": "I keep bees on my allotment.",
                        },
                    ),
                    ("user", "hello"),
                ],
            ),
        ],
    )


def test_memory_lines_keep_headings_and_drop_empty_categories_and_dates() -> None:
    memory = (
        "_note_\n\n## About Me\n\n- The user's name is Maya. (2024-01-01)\n\n"
        "## People\n\n- Nothing recorded yet.\n\n## Projects\n* Builds boats\n"
    )
    assert memory_lines(memory) == [
        ("About Me", "The user's name is Maya."),
        ("Projects", "Builds boats"),
    ]


def test_recall_needs_one_term_of_every_group_as_whole_words() -> None:
    terms = [["grant report"], ["15 June 2026", "2026-06-15"]]
    assert recalls("The user's Grant Report is due 2026-06-15.", terms)
    assert not recalls("The user's grant report is due soon.", terms)
    assert not recalls("The user studies Mayan history.", [["Maya"]])


def test_recall_per_kind_and_under_its_heading(export: Path) -> None:
    memory = (
        "## About Me\n- The user's name is Maya.\n"
        "## Projects\n- The user's grant report is due on 15 June 2026.\n"
    )
    score = score_memory(memory, MANIFEST, export)
    assert (score["planted"], score["recalled"], score["under_heading"]) == (3, 2, 1)
    assert score["recall"] == pytest.approx(2 / 3)
    assert score["by_kind"]["deadline"] == {
        "planted": 1,
        "recalled": 1,
        "under_heading": 0,
        "recall": 1.0,
    }
    assert score["missed"] == ["partner-2"]


def test_a_line_is_supported_by_one_user_message_not_by_the_assistant(export: Path) -> None:
    memory = (
        "## About Me\n- The user's name is Maya.\n- The user lives in Leeds.\n"
        "- The user keeps bees on an allotment.\n"
        "## Preferences\n- The user enjoys kayaking in Norway.\n- Nothing recorded yet.\n"
        "## People\n- The user adopted a greyhound near Bristol.\n"
    )
    score = score_memory(memory, MANIFEST, export)
    # the name line recalls a planted fact; Leeds and the bees (a custom instruction) are
    # supported; kayaking is only the assistant's; the greyhound line mixes two messages.
    assert score["lines"] == 5
    assert score["unsupported_lines"] == [
        "The user enjoys kayaking in Norway.",
        "The user adopted a greyhound near Bristol.",
    ]
    assert score["unsupported_share"] == pytest.approx(2 / 5)
    looser = score_memory(memory, MANIFEST, export, support_share=0.5)
    assert looser["unsupported_lines"] == ["The user enjoys kayaking in Norway."]


def test_content_words_meet_across_person_and_tense() -> None:
    assert content_words("The user lives in Leeds.") == content_words("I live in Leeds")
    assert content_words("The user's studies") == content_words("my study")
    assert content_words("the user is a") == set()


def test_manifest_may_be_a_file(export: Path, tmp_path: Path) -> None:
    import json

    path = tmp_path / "m.json"
    path.write_text(json.dumps(MANIFEST))
    assert score_memory("## People\n- Priya is the user's wife.\n", path, export)["recalled"] == 1
