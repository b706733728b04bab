from __future__ import annotations

import itertools
import random
from pathlib import Path

from app.domain import Fact, FactCategory
from app.processors.reading.text import estimate_tokens
from bench.cost_model import EARLIER_REPLY, OUR_REPLY, output_tokens
from bench.earlier_design import (
    REQUEST_FIXED_CHARS,
    active_messages,
    earlier_design_cost,
    format_conversation,
    request_tokens,
    split_text,
)
from tests.bench.exports import chatgpt_conversation, write_json

C = FactCategory


def _naive_split(text: str, target: int = 2000, overlap_chars: int = 800) -> list[str]:
    """The earlier design's algorithm written the slow, obvious way (a fresh find per kind)."""
    if len(text) // 4 <= target:
        return [text]
    sentences, pos = [], 0
    while pos < len(text):
        ends = [text.find(b, pos) for b in (". ", "? ", "! ", "\n")]
        ends = [e for e in ends if e != -1]
        if not ends:
            sentences.append(text[pos:])
            break
        sentences.append(text[pos : min(ends) + 1])
        pos = min(ends) + 1
    chunks, current, tokens = [], "", 0
    for s in sentences:
        if tokens + len(s) // 4 > target and current:
            chunks.append(current)
            current = (current[-overlap_chars:] if len(current) > overlap_chars else current) + s
            tokens = len(current) // 4
        else:
            current, tokens = current + s, tokens + len(s) // 4
    return [*chunks, current] if current else chunks


def test_split_matches_the_obvious_algorithm() -> None:
    rng = random.Random(3)
    pieces = ["word ", "end. ", "ask? ", "wow! ", "\n", "x" * 300, "e.g.", "?!"]
    for _ in range(40):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6000)))
        assert split_text(text) == _naive_split(text)


def test_chunks_overlap_by_800_characters() -> None:
    text = "# t\n\n" + " ".join(f"Sentence number {i} is here." for i in range(2000))
    chunks = split_text(text)
    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        assert after.startswith(before[-800:])
        assert len(after) // 4 <= 2000 + 200 + 10


def test_active_path_visible_messages_and_content() -> None:
    conversation = chatgpt_conversation(
        "c",
        [
            ("system", ""),
            ("user", {"content_type": "user_editable_context", "user_profile": "I am Sam."}),
            ("user", {"content_type": "multimodal_text", "parts": [{"asset": 1}, "look", ""]}),
            ("assistant", {"content_type": "code", "text": 'search("x")'}),
            ("tool", "result"),
            ("assistant", "answer"),
        ],
        title=None,
    )
    # a regenerated answer off the first user turn, not on the active path
    conversation["mapping"]["c-2"]["children"].append("old")
    conversation["mapping"]["old"] = {
        "id": "old",
        "parent": "c-2",
        "message": {"author": {"role": "assistant"}, "content": {"parts": ["stale"]}},
    }
    assert active_messages(conversation) == [
        ("user", "look"),
        ("assistant", 'search("x")'),
        ("assistant", "answer"),
    ]
    assert format_conversation(conversation) == (
        '# None\n\nUser: look\nAssistant: search("x")\nAssistant: answer'
    )
    # without a current_node: forward from the root, the last child at each fork
    del conversation["current_node"]
    assert active_messages(conversation)[-1] == ("assistant", "stale")


def test_long_messages_are_cut_and_empty_conversations_still_make_a_chunk() -> None:
    long = chatgpt_conversation("c", [("user", "a" * 6000)], title="T")
    assert format_conversation(long) == "# T\n\nUser: " + "a" * 5000 + "... [truncated]"
    empty = chatgpt_conversation("e", [("tool", "x")], title="E")
    assert format_conversation(empty) == "# E\n[No messages found]"


def test_request_tokens_are_our_estimate_of_the_whole_request() -> None:
    for chunk in ("", "abc", "héllo wörld " * 50):
        assert request_tokens(chunk) == estimate_tokens("p" * REQUEST_FIXED_CHARS + chunk)


def test_output_tokens_are_a_skeleton_a_call_plus_each_fact_as_written() -> None:
    facts = [
        Fact(C.PREFERENCES, "The user hates long intros."),
        Fact(C.ABOUT_ME, "The user lives in Leeds."),
    ]
    ours = output_tokens(facts, 3, OUR_REPLY)
    assert ours == 3 * estimate_tokens('{"facts": []}') + sum(
        estimate_tokens(OUR_REPLY.item(f) or "") for f in facts
    )
    # the earlier format has no place for About Me: only the preference is priced
    assert output_tokens(facts, 1, EARLIER_REPLY) == estimate_tokens(
        EARLIER_REPLY.skeleton
    ) + estimate_tokens('    "The user hates long intros.",\n')


def test_earlier_design_cost_makes_a_call_per_chunk(tmp_path: Path) -> None:
    long = chatgpt_conversation("a", [("user", "I hate long intros. " * 200)] * 8)
    short = chatgpt_conversation("b", [("user", "I live in Leeds."), ("assistant", "ok")])
    cost = earlier_design_cost(write_json(tmp_path / "e.json", [long, short]))
    pieces = len(split_text(format_conversation(long)))
    assert pieces > 3
    assert cost.calls == cost.chunks == pieces + 1
    # the preference once in each chunk of "a" (each chunk holds a "User:" line); Leeds is
    # About Me, which the earlier reply format has no key for
    assert (cost.facts, cost.unpriced_facts) == (pieces + 1, 1)
    sent = [*split_text(format_conversation(long)), format_conversation(short)]
    assert cost.input_tokens == sum(request_tokens(c) for c in sent)
