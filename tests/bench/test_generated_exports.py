from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config import Settings
from app.processors.reading.export_reader import iter_conversations
from bench.make_export import write_export
from bench.planted import date_forms, write_planted_export
from bench.quality_score import recalls

SETTINGS = Settings(_env_file=None)


def test_short_shape_has_mostly_conversations_of_at_most_four_messages(tmp_path: Path) -> None:
    path = write_export(tmp_path / "s.json", size_mb=2, fmt="json", shape="short")
    counts = [len(c.messages) for c in iter_conversations(path, settings=SETTINGS)]
    assert sum(1 for n in counts if n <= 4) >= 0.6 * len(counts)
    again = write_export(tmp_path / "s2.json", size_mb=2, fmt="json", shape="short")
    assert again.read_bytes() == path.read_bytes()


def test_one_message_shape_writes_exactly_n_questions(tmp_path: Path) -> None:
    path = write_export(
        tmp_path / "o.json", size_mb=0, fmt="json", shape="one-message", conversations=300
    )
    conversations = list(iter_conversations(path, settings=SETTINGS))
    assert len(conversations) == 300
    assert all([m.role for m in c.messages] == ["user"] for c in conversations)
    assert sum(1 for c in conversations if c.signals) == 12  # every 25th, as the default shape


def test_unknown_shape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export shape"):
        write_export(tmp_path / "x.json", size_mb=1, fmt="json", shape="long")


def test_planted_facts_are_where_the_manifest_says(tmp_path: Path) -> None:
    export = tmp_path / "p.json"
    manifest = json.loads(write_planted_export(export, size_mb=0.5, seed=3).read_text())
    by_id = {c.id: c for c in iter_conversations(export, settings=SETTINGS)}
    kinds = {f["kind"] for f in manifest["facts"]}
    assert kinds == {"name", "city", "partner", "work", "pet", "deadline", "event"} | {
        "preference",
        "belief",
    }
    for fact in manifest["facts"]:
        assert fact["conversation_ids"]
        for cid, index, turns in zip(
            fact["conversation_ids"],
            fact["message_indexes"],
            fact["conversation_turns"],
            strict=True,
        ):
            users = [m.text for m in by_id[cid].messages if m.role == "user"]
            assert users[index].startswith(fact["statement"])
            if fact["placement"] == "early in a long conversation":
                assert turns >= 25
                assert index <= 1
        # the statement itself recalls the fact: the key terms are the statement's words
        assert recalls(fact["statement"], fact["key_terms"]), fact
    assert any(f["placement"] == "early in a long conversation" for f in manifest["facts"])


def test_date_forms() -> None:
    from datetime import date

    assert date_forms(date(2026, 6, 15))[:2] == ["15 June 2026", "June 15, 2026"]
