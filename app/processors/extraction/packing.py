"""Extraction requests decoupled from storage chunks: consecutive uncached chunks — across
conversations — packed into one request up to a token budget.

A `Unit` is one chunk's excerpt (or one batch of the user's signals) with what its facts will
carry (conversation, date) and the key the fact cache files it under (the chunk's content hash).
`Packer` fills a request with units in stream order until the next would pass the budget or the
excerpt limit; a unit larger than the budget goes alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

from app.domain import Chunk, Fact, UserSignal
from app.ports import Excerpt, ExtractionRequest
from app.processors.extraction.text import signal_key
from app.processors.prompts import excerpt_overhead_text, facts_cap
from app.processors.reading.text import estimate_tokens

__all__ = ["MAX_EXCERPTS_PER_REQUEST", "Packer", "Unit", "chunk_unit", "request_of", "signal_unit"]

# However small the excerpts, a request carries at most this many: ids stay three digits, and an
# unusable reply costs a bounded split. The reply names an excerpt without facts by its id alone,
# so many tiny excerpts are cheap to answer; the token budget closes nearly every request first
# (192 one-message excerpts are ~7,000 tokens).
MAX_EXCERPTS_PER_REQUEST = 192


@dataclass(frozen=True, slots=True)
class Unit:
    """One excerpt's worth of work, keyed for the cache, with the provenance its facts get."""

    key: str
    excerpt: Excerpt
    conversation_id: str | None
    date: date | None
    tokens: int  # the excerpt's share of a request: its text and its tags
    from_signal: bool = False

    def attach(self, facts: Sequence[Fact]) -> list[Fact]:
        """The excerpt's facts as the pass keeps them: at most its cap, with its provenance."""
        return [
            replace(
                f,
                conversation_id=self.conversation_id,
                date=self.date,
                from_signal=f.from_signal or self.from_signal,
            )
            for f in facts[: facts_cap(self.excerpt)]
        ]


def _tokens(excerpt: Excerpt) -> int:
    body = excerpt.text or "\n".join(s.text for s in excerpt.signals)
    return estimate_tokens(body) + estimate_tokens(excerpt_overhead_text(excerpt))


def chunk_unit(chunk: Chunk, text: str) -> Unit:
    day = chunk.created_at.date() if chunk.created_at else None
    excerpt = Excerpt(
        chunk_id=chunk.id,
        conversation_id=chunk.conversation_id,
        title=chunk.title,
        date=day,
        text=text,
    )
    return Unit(chunk.content_hash, excerpt, chunk.conversation_id, day, _tokens(excerpt))


def signal_unit(batch: tuple[UserSignal, ...]) -> Unit:
    conversations = {s.conversation_id for s in batch if s.conversation_id}
    dates = [s.created_at.date() for s in batch if s.created_at]
    key = signal_key(batch)
    excerpt = Excerpt(
        chunk_id=key,
        conversation_id=next(iter(conversations)) if len(conversations) == 1 else "",
        title="The user's own notes about themselves",
        date=max(dates) if dates else None,
        text="",
        signals=batch,
    )
    cid = excerpt.conversation_id or None
    return Unit(key, excerpt, cid, excerpt.date, _tokens(excerpt), from_signal=True)


def request_of(units: Sequence[Unit]) -> ExtractionRequest:
    return ExtractionRequest(tuple(u.excerpt for u in units))


class Packer:
    """Units in, full requests out, in stream order."""

    def __init__(self, *, budget_tokens: int, max_excerpts: int = MAX_EXCERPTS_PER_REQUEST) -> None:
        self.budget = max(1, budget_tokens)
        self.max_excerpts = max(1, max_excerpts)
        self._pending: list[Unit] = []
        self._tokens = 0

    def add(self, unit: Unit) -> list[Unit] | None:
        """Take `unit`; return the request it closed (without it) when it did not fit."""
        full: list[Unit] | None = None
        if self._pending and (
            self._tokens + unit.tokens > self.budget or len(self._pending) >= self.max_excerpts
        ):
            full = self.flush()
        self._pending.append(unit)
        self._tokens += unit.tokens
        return full

    def flush(self) -> list[Unit]:
        """The request being filled, as it is (empty when there is none)."""
        pending, self._pending, self._tokens = self._pending, [], 0
        return pending

    def __len__(self) -> int:
        return len(self._pending)
