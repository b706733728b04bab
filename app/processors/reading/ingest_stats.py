"""Counts gathered while an export streams past: what goes on the job row and into `inspect`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.domain import Chunk, Conversation

__all__ = ["IngestStats"]


@dataclass(slots=True)
class IngestStats:
    """A mutable accumulator; only counts, never text."""

    conversations: int = 0
    messages_by_role: dict[str, int] = field(default_factory=lambda: {"user": 0, "assistant": 0})
    signals: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    estimated_tokens: int = 0

    @property
    def messages(self) -> int:
        return sum(self.messages_by_role.values())

    def add_conversation(self, conversation: Conversation) -> None:
        self.conversations += 1
        for message in conversation.messages:
            self.messages_by_role[message.role] = self.messages_by_role.get(message.role, 0) + 1
        for signal in conversation.signals:
            self.signals[signal.kind] = self.signals.get(signal.kind, 0) + 1

    def add_chunks(self, chunks: Iterable[Chunk]) -> None:
        for chunk in chunks:
            self.chunks += 1
            self.estimated_tokens += chunk.token_estimate

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "messages": self.messages,
            "messages_by_role": dict(self.messages_by_role),
            "signals": dict(self.signals),
            "chunks": self.chunks,
            "estimated_tokens": self.estimated_tokens,
        }
