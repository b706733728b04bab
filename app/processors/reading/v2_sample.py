"""The v2 input, collected during the one streaming pass (DESIGN §6), so regeneration needs no
second read of the export.

Richness = 10 × messages + Σ min(len(user message), 500) + 20 × min(user turns, assistant turns),
for conversations with at least 4 messages. A min-heap keeps the `size` richest; it holds only
their formatted text (each capped, see `MAX_CONVERSATION_CHARS`), never `Conversation` objects,
so memory is bounded by size × cap whatever the export's size.

`fit` picks what one request may carry: whole conversations, richest first, within DESIGN's
600,000 characters and the token budget the per-minute limit leaves (request_fit.py).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from app.domain import Conversation
from app.processors.reading.text import estimate_tokens

__all__ = [
    "MAX_CONVERSATION_CHARS",
    "MESSAGE_CHARS",
    "MIN_MESSAGES",
    "V2Sample",
    "V2Sampler",
    "richness",
]

MIN_MESSAGES = 4
MESSAGE_CHARS = 2_000
# One conversation's formatted text is cut here: the prompt holds 600,000 chars, so even the
# richest conversation leaves room for at least 19 others (3 in the ~130,000 that fit tier 1's
# per-minute limit). Bounds the sampler at ~6 MB of text.
MAX_CONVERSATION_CHARS = 30_000
_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class V2Sample:
    """The v2 prompt's conversations: the text, how many, and what was left out to fit."""

    text: str
    conversations: int
    tokens: int  # estimated, separators included
    left_out: int  # of the `limit` richest, those that did not fit


def richness(conversation: Conversation) -> int:
    user = [m for m in conversation.messages if m.role == "user"]
    assistant_turns = len(conversation.messages) - len(user)
    return (
        10 * len(conversation.messages)
        + sum(min(len(m.text), 500) for m in user)
        + 20 * min(len(user), assistant_turns)
    )


def format_conversation(conversation: Conversation) -> str:
    title = (conversation.title or "Untitled").replace('"', "'")
    day = conversation.created_at.date().isoformat() if conversation.created_at else "undated"
    lines = [f'=== Conversation: "{title}" ({day}) ===']
    for message in conversation.messages:
        label = "User" if message.role == "user" else "Assistant"
        lines.append(f"{label}: {message.text[:MESSAGE_CHARS]}")
    return "\n".join(lines)[:MAX_CONVERSATION_CHARS]


class V2Sampler:
    """Offer every conversation; `render()` gives the v2 prompt text of the richest ones."""

    def __init__(self, size: int = 200) -> None:
        self.size = size
        # (score, conversation id, text): a total order, so the kept set does not depend on the
        # order conversations arrive in (ties go to the larger id, then the larger text).
        self._heap: list[tuple[int, str, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, conversation: Conversation) -> None:
        if len(conversation.messages) < MIN_MESSAGES:
            return
        score = richness(conversation)
        if len(self._heap) >= self.size and score < self._heap[0][0]:
            return  # cheap exit before formatting: most conversations of a big export land here
        entry = (score, conversation.id, format_conversation(conversation))
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def fit(
        self, *, limit: int = 200, max_chars: int = 600_000, max_tokens: int | None = None
    ) -> V2Sample:
        """The richest `limit` conversations, richest first, whole ones only, within `max_chars`
        and (when given) `max_tokens` estimated tokens."""
        parts: list[str] = []
        chars = tokens = left_out = 0
        for _, _, text in sorted(self._heap, reverse=True)[:limit]:
            extra_chars = len(text) + (len(_SEPARATOR) if parts else 0)
            extra_tokens = estimate_tokens(text) + (1 if parts else 0)
            if chars + extra_chars > max_chars or (
                max_tokens is not None and tokens + extra_tokens > max_tokens
            ):
                left_out += 1
                continue  # a smaller one further down may still fit
            parts.append(text)
            chars += extra_chars
            tokens += extra_tokens
        return V2Sample(_SEPARATOR.join(parts), len(parts), tokens, left_out)

    def render(
        self, *, limit: int = 200, max_chars: int = 600_000, max_tokens: int | None = None
    ) -> str:
        """`fit`'s text."""
        return self.fit(limit=limit, max_chars=max_chars, max_tokens=max_tokens).text
