"""Conversation → chunks of a token budget, split at message boundaries (and, inside a message too
long for one chunk, at sentence boundaries).

Deterministic by construction: no clock, no randomness, no dependence on the user. The same
conversation always yields the same chunks with the same `content_hash`, so an unchanged
conversation in a later re-export hits the fact cache; `id` adds the user so rows upsert in place.

What one pasted blob can contribute is bounded twice: a message is cut to `max_message_chars`
(head and tail kept, see `truncate_middle`), so it yields at most
`ceil(max_message_chars / 4 / target_tokens) + 1` chunks however large the paste was.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from app.domain import Chunk, Conversation, Message
from app.processors.text import estimate_tokens, truncate_middle

__all__ = ["CHUNK_NAMESPACE", "chunk_conversation", "estimate_tokens", "format_message"]

# uuid5 namespace for chunk ids (a fixed random value: ids must never change between releases).
CHUNK_NAMESPACE = uuid.UUID("5b0c2f7e-8d3a-4c1e-9a57-3f2d6b1e4a90")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n{2,}")
_LABEL = {"user": "User", "assistant": "Assistant"}


def format_message(message: Message) -> str:
    return f"{_LABEL[message.role]}: {message.text}"


def chunk_conversation(
    conversation: Conversation,
    *,
    user_id: str,
    target_tokens: int,
    overlap_tokens: int,
    max_message_chars: int,
) -> list[Chunk]:
    """Chunks of about `target_tokens` each; with `overlap_tokens` > 0 a chunk repeats the last
    whole messages of the previous one, up to that many tokens."""
    pieces: list[tuple[Message, int]] = []
    for message in conversation.messages:
        text = truncate_middle(message.text, max_message_chars)
        for part in _split_long(message, text, target_tokens):
            pieces.append((part, estimate_tokens(format_message(part)) + 1))
    groups: list[list[tuple[Message, int]]] = []
    current: list[tuple[Message, int]] = []
    tokens = fresh = 0
    for piece in pieces:
        if fresh and tokens + piece[1] > target_tokens:
            groups.append(current)
            current = _overlap(current, overlap_tokens)
            tokens, fresh = sum(t for _, t in current), 0
        current.append(piece)
        tokens += piece[1]
        fresh += 1
    if fresh:
        groups.append(current)
    created = conversation.created_at or _first_time(conversation.messages)
    return [
        _chunk(conversation, [m for m, _ in group], index=i, user_id=user_id, created_at=created)
        for i, group in enumerate(groups)
    ]


def _chunk(
    conversation: Conversation,
    messages: list[Message],
    *,
    index: int,
    user_id: str,
    created_at: datetime | None,
) -> Chunk:
    content = "\n".join(format_message(m) for m in messages)
    digest = hashlib.sha256(f"{conversation.id}\n{index}\n{content}".encode()).hexdigest()
    return Chunk(
        id=str(uuid.uuid5(CHUNK_NAMESPACE, f"{user_id}\n{conversation.id}\n{digest}")),
        conversation_id=conversation.id,
        title=conversation.title,
        created_at=created_at,
        index=index,
        content=content,
        message_count=len(messages),
        content_hash=digest,
        token_estimate=estimate_tokens(content),
        messages=tuple(messages),
    )


def _overlap(group: Sequence[tuple[Message, int]], budget: int) -> list[tuple[Message, int]]:
    tail: list[tuple[Message, int]] = []
    used = 0
    for piece in reversed(group):
        if used + piece[1] > budget:
            break
        tail.insert(0, piece)
        used += piece[1]
    return tail


def _split_long(message: Message, text: str, target_tokens: int) -> list[Message]:
    """The message as one piece if it fits the budget, else sentence-packed pieces that do."""
    if estimate_tokens(format_message(message)) <= target_tokens and text == message.text:
        return [message]
    budget = max(target_tokens - 8, 16)  # room for the "Assistant: " label
    if estimate_tokens(text) <= budget:
        return [Message(message.role, text, message.created_at)]
    pieces: list[str] = []
    current = ""
    for sentence in _sentences(text, budget):
        candidate = f"{current} {sentence}" if current else sentence
        if current and estimate_tokens(candidate) > budget:
            pieces.append(current)
            candidate = sentence
        current = candidate
    if current:
        pieces.append(current)
    return [Message(message.role, piece, message.created_at) for piece in pieces]


def _sentences(text: str, budget: int) -> list[str]:
    """Sentences, with any single one longer than the budget cut into budget-sized slices."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        if estimate_tokens(sentence) <= budget:
            out.append(sentence)
            continue
        step = max(budget * 4 * len(sentence) // len(sentence.encode("utf-8")), 1)
        out.extend(sentence[i : i + step] for i in range(0, len(sentence), step))
    return out


def _first_time(messages: Sequence[Message]) -> datetime | None:
    times = [m.created_at for m in messages if m.created_at is not None]
    return min(times) if times else None
