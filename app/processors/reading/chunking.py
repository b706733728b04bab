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

from app.config import Settings
from app.domain import Chunk, Conversation, Message
from app.processors.reading.text import estimate_tokens, truncate_middle

__all__ = [
    "CHUNK_NAMESPACE",
    "chunk_as_configured",
    "chunk_conversation",
    "estimate_tokens",
    "format_message",
]

# uuid5 namespace for chunk ids (a fixed random value: ids must never change between releases).
CHUNK_NAMESPACE = uuid.UUID("5b0c2f7e-8d3a-4c1e-9a57-3f2d6b1e4a90")
# A sentence ends at whitespace after . ! ? (or a CJK stop), or at a blank line: the split points
# of `re.split(r"(?<=[.!?。！？])\s+|\n{2,}", text)`. Written to start with a character class,
# which the regex engine scans for quickly (the lookbehind form is tried at every position and
# ran ~2x slower); group 1 is a run of newlines, group 2 the whitespace after a stop.
_SENTENCE_END = re.compile(r"[.!?。！？\n](?:(?<=\n)(\n+)|(?<=[.!?。！？])(\s+))")
_LABEL = {"user": "User", "assistant": "Assistant"}


def format_message(message: Message) -> str:
    return f"{_LABEL[message.role]}: {message.text}"


# One piece of a chunk: the (possibly cut or split) message, its token estimate + 1 for the
# joining newline, and its rendered "Label: text" line, computed once and reused for the content.
_Piece = tuple[Message, int, str]


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
    pieces: list[_Piece] = []
    for message in conversation.messages:
        text = truncate_middle(message.text, max_message_chars)
        line = format_message(message)
        tokens = estimate_tokens(line)
        if tokens <= target_tokens and text == message.text:
            pieces.append((message, tokens + 1, line))  # fits whole: the common case
            continue
        for part in _split_long(message, text, target_tokens):
            line = format_message(part)
            pieces.append((part, estimate_tokens(line) + 1, line))
    groups: list[list[_Piece]] = []
    current: list[_Piece] = []
    tokens = fresh = 0
    for piece in pieces:
        if fresh and tokens + piece[1] > target_tokens:
            groups.append(current)
            current = _overlap(current, overlap_tokens)
            tokens, fresh = sum(p[1] for p in current), 0
        current.append(piece)
        tokens += piece[1]
        fresh += 1
    if fresh:
        groups.append(current)
    created = conversation.created_at or _first_time(conversation.messages)
    return [
        _chunk(conversation, group, index=i, user_id=user_id, created_at=created)
        for i, group in enumerate(groups)
    ]


def _chunk(
    conversation: Conversation,
    group: list[_Piece],
    *,
    index: int,
    user_id: str,
    created_at: datetime | None,
) -> Chunk:
    content = "\n".join([p[2] for p in group])
    prefix = f"{conversation.id}\n{index}\n"
    encoded = (prefix + content).encode()
    digest = hashlib.sha256(encoded).hexdigest()
    # The hashed bytes are the content's UTF-8 after the prefix: its token estimate comes for
    # free (the same figure as `estimate_tokens(content)`, without encoding the content again).
    content_bytes = len(encoded) - (len(prefix) if prefix.isascii() else len(prefix.encode()))
    return Chunk(
        id=_uuid5(f"{user_id}\n{conversation.id}\n{digest}"),
        conversation_id=conversation.id,
        title=conversation.title,
        created_at=created_at,
        index=index,
        content=content,
        message_count=len(group),
        content_hash=digest,
        token_estimate=(content_bytes + 3) // 4,
        messages=tuple([p[0] for p in group]),
    )


_NAMESPACE_BYTES = CHUNK_NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """`str(uuid.uuid5(CHUNK_NAMESPACE, name))`, without building a `UUID` object per chunk."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest())
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _overlap(group: Sequence[_Piece], budget: int) -> list[_Piece]:
    tail: list[_Piece] = []
    used = 0
    for piece in reversed(group):
        if used + piece[1] > budget:
            break
        tail.insert(0, piece)
        used += piece[1]
    return tail


def _split_long(message: Message, text: str, target_tokens: int) -> list[Message]:
    """Sentence-packed pieces that fit the budget, for a message that does not fit whole (or was
    cut by `truncate_middle`): the caller handles the message that fits as it is."""
    budget = max(target_tokens - 8, 16)  # room for the "Assistant: " label
    if estimate_tokens(text) <= budget:
        return [Message(message.role, text, message.created_at)]
    # Greedy packing: sentences joined by one space while `estimate_tokens` of the joined text
    # stays within the budget. UTF-8 sizes add up (the space is one byte), so the estimate of a
    # candidate is computed from the sizes instead of encoding every candidate.
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for sentence, sentence_size in _sentences(text, budget):
        if current and (size + 1 + sentence_size + 3) // 4 > budget:
            pieces.append(" ".join(current))
            current, size = [], 0
        size = size + 1 + sentence_size if current else sentence_size
        current.append(sentence)
    if current:
        pieces.append(" ".join(current))
    return [Message(message.role, piece, message.created_at) for piece in pieces]


def _sentences(text: str, budget: int) -> list[tuple[str, int]]:
    """(sentence, UTF-8 size) pairs, with any single sentence longer than the budget cut into
    budget-sized slices."""
    out: list[tuple[str, int]] = []
    for sentence in _split_sentences(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        size = _utf8_size(sentence)
        if (size + 3) // 4 <= budget:
            out.append((sentence, size))
            continue
        step = max(budget * 4 * len(sentence) // len(sentence.encode("utf-8")), 1)
        out.extend(
            (piece, _utf8_size(piece))
            for piece in (sentence[i : i + step] for i in range(0, len(sentence), step))
        )
    return out


def _split_sentences(text: str) -> list[str]:
    """`text` cut at every `_SENTENCE_END`, the separators dropped (as `re.split` would)."""
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start() if match.start(1) >= 0 else match.start(2)
        out.append(text[start:end])
        start = match.end()
    out.append(text[start:])
    return out


def _utf8_size(text: str) -> int:
    """The byte count `estimate_tokens` works from."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _first_time(messages: Sequence[Message]) -> datetime | None:
    times = [m.created_at for m in messages if m.created_at is not None]
    return min(times) if times else None


def chunk_as_configured(
    conversation: Conversation, *, user_id: str, settings: Settings
) -> list[Chunk]:
    """`chunk_conversation` with the budgets the service is configured with: how an import
    chunks, so inspection, benchmarks and tests expect exactly what an import writes."""
    return chunk_conversation(
        conversation,
        user_id=user_id,
        target_tokens=settings.chunk_target_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        max_message_chars=settings.max_message_chars,
    )
