"""The v2 input, collected during the one streaming pass (DESIGN §6), so regeneration needs no
second read of the export.

Richness = 10 × messages + Σ min(len(user message), 500) + 20 × min(user turns, assistant turns),
for conversations with at least 4 messages. A min-heap keeps the `size` richest; it holds only
their formatted text (each capped, see `MAX_CONVERSATION_CHARS`), never `Conversation` objects,
so memory is bounded by size × cap whatever the export's size.
"""

from __future__ import annotations

import heapq

from app.domain import Conversation

__all__ = ["MAX_CONVERSATION_CHARS", "MESSAGE_CHARS", "MIN_MESSAGES", "V2Sampler", "richness"]

MIN_MESSAGES = 4
MESSAGE_CHARS = 2_000
# One conversation's formatted text is cut here: the prompt holds 600,000 chars, so even the
# richest conversation leaves room for at least 19 others. Bounds the sampler at ~6 MB of text.
MAX_CONVERSATION_CHARS = 30_000


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

    def render(self, *, limit: int = 200, max_chars: int = 600_000) -> str:
        """The richest `limit` conversations, richest first, whole ones only, within `max_chars`."""
        parts: list[str] = []
        used = 0
        for _, _, text in sorted(self._heap, reverse=True)[:limit]:
            extra = len(text) + (2 if parts else 0)
            if used + extra > max_chars:
                continue  # a smaller one further down may still fit
            parts.append(text)
            used += extra
        return "\n\n".join(parts)
