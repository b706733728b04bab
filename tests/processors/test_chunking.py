from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.config import Settings
from app.domain import Conversation, Message
from app.processors.inspect import inspect_export
from app.processors.reading.chunking import CHUNK_NAMESPACE, chunk_conversation, estimate_tokens
from app.processors.reading.export_reader import iter_conversations
from app.processors.reading.ingest_stats import IngestStats
from app.processors.reading.v2_sample import V2Sampler, richness
from tests.processors.samples import EXPECTED, sample

T0 = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)


def _conv(texts: list[str], *, conv_id: str = "c1") -> Conversation:
    roles = ("user", "assistant")
    messages = tuple(Message(roles[i % 2], t, T0) for i, t in enumerate(texts))  # type: ignore[arg-type]
    return Conversation(id=conv_id, title="Plans", created_at=T0, messages=messages)


def _chunks(conv: Conversation, *, user_id: str = "u1", target: int = 200, overlap: int = 0):  # type: ignore[no-untyped-def]
    return chunk_conversation(
        conv, user_id=user_id, target_tokens=target, overlap_tokens=overlap, max_message_chars=6000
    )


def _sentences(n: int, word: str) -> str:
    return " ".join(f"This is sentence {i} about {word}." for i in range(n))


def test_chunking_is_deterministic_and_hash_ignores_the_user() -> None:
    conv = _conv([_sentences(40, "work"), "Sure.", _sentences(30, "home"), "Noted."])
    first, again, other_user = _chunks(conv), _chunks(conv), _chunks(conv, user_id="u2")
    assert len(first) > 1
    assert first == again
    assert [c.content_hash for c in first] == [c.content_hash for c in other_user]
    assert {c.id for c in first}.isdisjoint({c.id for c in other_user})
    for chunk in first:
        expected_id = uuid.uuid5(CHUNK_NAMESPACE, f"u1\nc1\n{chunk.content_hash}")
        assert chunk.id == str(expected_id)


def test_chunks_respect_budget_and_keep_conversation_metadata() -> None:
    conv = _conv([_sentences(60, "cats"), "Fine.", _sentences(10, "dogs")])
    chunks = _chunks(conv, target=150)
    assert all(c.token_estimate <= 150 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(
        c.created_at == T0 and c.title == "Plans" and c.conversation_id == "c1" for c in chunks
    )
    # Nothing lost or reordered: the sentences reappear in order across chunks.
    joined = " ".join(c.content for c in chunks)
    positions = [joined.index(f"sentence {i} about cats.") for i in range(60)]
    assert positions == sorted(positions)
    assert chunks[0].content.startswith("User: This is sentence 0")
    assert all(c.message_count == len(c.messages) for c in chunks)


def test_unchanged_prefix_hashes_the_same_when_a_conversation_grows() -> None:
    base = [_sentences(30, f"topic {i}") for i in range(6)]
    short, longer = _chunks(_conv(base)), _chunks(_conv([*base, "A new question?"]))
    assert [c.content_hash for c in short[:-1]] == [
        c.content_hash for c in longer[: len(short) - 1]
    ]


def test_overlap_repeats_whole_trailing_messages() -> None:
    conv = _conv([f"message number {i} " * 10 for i in range(12)])
    plain, overlapped = _chunks(conv, target=120), _chunks(conv, target=120, overlap=60)
    assert len(overlapped) >= len(plain)
    for prev, nxt in itertools.pairwise(overlapped):
        assert nxt.messages[0] in prev.messages


def test_a_huge_paste_is_bounded() -> None:
    conv = _conv(["x " * 2_000_000, "That is a lot."])
    chunks = _chunks(conv, target=1500)
    assert len(chunks) <= 3
    assert sum(len(c.content) for c in chunks) < 7_000


def test_created_at_falls_back_to_the_first_message_never_now() -> None:
    msgs = (Message("user", "hi", T0), Message("assistant", "hello", None))
    (chunk,) = _chunks(Conversation(id="c", title=None, created_at=None, messages=msgs))
    assert chunk.created_at == T0
    (undated,) = _chunks(
        Conversation(id="c", title=None, created_at=None, messages=(Message("user", "hi"),))
    )
    assert undated.created_at is None


def test_estimate_tokens_counts_bytes() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 100) == 100
    assert estimate_tokens("日本語") == 3  # 9 UTF-8 bytes


# --- v2 sample ---------------------------------------------------------------------------------


def test_richness_follows_design_formula() -> None:
    conv = _conv(["a" * 600, "b" * 50, "c" * 100, "d"])
    assert richness(conv) == 10 * 4 + (500 + 100) + 20 * 2


def test_sampler_keeps_the_richest_independently_of_order() -> None:
    convs = [_conv(["q" * (10 * i), "a", "q", "a"], conv_id=f"c{i:02d}") for i in range(30)]
    convs.append(_conv(["too", "short"], conv_id="tiny"))
    forward, backward = V2Sampler(size=5), V2Sampler(size=5)
    for conv in convs:
        forward.offer(conv)
    for conv in reversed(convs):
        backward.offer(conv)
    assert len(forward) == 5
    assert forward.render() == backward.render()
    text = forward.render()
    assert text.startswith('=== Conversation: "Plans" (2024-03-05) ===\nUser: ' + "q" * 290)
    assert text.count("=== Conversation:") == 5
    assert len(forward.render(limit=2)) < len(text)
    assert len(forward.render(max_chars=400)) <= 400


# --- stats and inspect -------------------------------------------------------------------------


def test_ingest_stats_accumulate() -> None:
    stats = IngestStats()
    conv = _conv(["hello", "hi", "bye"])
    stats.add_conversation(conv)
    chunks = _chunks(conv)
    stats.add_chunks(chunks)
    assert stats.as_dict()["messages_by_role"] == {"user": 2, "assistant": 1}
    assert stats.chunks == len(chunks) == 1
    assert stats.estimated_tokens == chunks[0].token_estimate


@pytest.mark.samples
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_every_sample(name: str) -> None:
    fmt, conversations, users, assistants, signals = EXPECTED[name]
    summary = inspect_export(sample(name), settings=Settings(_env_file=None))  # type: ignore[call-arg]
    json.dumps(summary)  # JSON-ready
    assert summary["format"] == fmt
    assert summary["conversations"] == conversations
    assert summary["messages_by_role"] == {"user": users, "assistant": assistants}
    assert sum(summary["user_signals"].values()) == signals
    assert summary["chunks"] >= conversations
    assert summary["estimated_cost_usd"] > 0


def test_inspect_counts_chunks_like_the_chunker(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, chunk_target_tokens=200)  # type: ignore[call-arg]
    path = sample("librechat-chatgpt-export.json")
    expected = sum(len(_chunks(c, target=200)) for c in iter_conversations(path, settings=settings))
    assert inspect_export(path, settings=settings)["chunks"] == expected > 2
