"""write_memory: the MEMORY markdown from the facts, by category; plain text, no tool."""

from __future__ import annotations

import re
from datetime import date

from app.domain import Fact, FactCategory
from app.ports import MemoryRequest
from app.processors.prompts.blocks import Tag, block, one

__all__ = [
    "EMPTY_CATEGORY_LINE",
    "MEMORY_HEADINGS",
    "MEMORY_SYSTEM",
    "memory_message",
    "parse_memory_input",
]

MEMORY_HEADINGS: tuple[str, ...] = tuple(f"## {c.value}" for c in FactCategory)
EMPTY_CATEGORY_LINE = "- Nothing recorded yet."

MEMORY_SYSTEM = f"""\
You write the MEMORY section of a profile: the durable facts an AI assistant should remember about \
the person it serves, "the user". You are given facts grouped by category, each with its date \
(or "undated") and "own words" when the user said it about themselves.

Write markdown with exactly these seven headings, in this order, and no others:
{chr(10).join(MEMORY_HEADINGS)}

Under each heading write short bullet points ("- "), one fact per bullet, in the third person. \
Merge duplicates; where facts conflict keep the newer one; prefer the user's own words. Use only \
the facts given: no invention, no advice, no commentary. A heading with no facts gets exactly one \
line: "{EMPTY_CATEGORY_LINE}". Never write that line under a heading that has facts.

Reply with the markdown only: start with "{MEMORY_HEADINGS[0]}", no title, no preamble, no code \
fence."""

_MEMORY_INSTRUCTION = "Write the MEMORY markdown from the facts above."


_FACT_LINE = re.compile(r"^- \((?P<date>[^;)]*)(?P<own>; own words)?\) (?P<text>.*)$")


def _fact_line(fact: Fact) -> str:
    when = fact.date.isoformat() if fact.date else "undated"
    own = "; own words" if fact.from_signal else ""
    return f"- ({when}{own}) {' '.join(fact.text.split())}"


def memory_message(request: MemoryRequest) -> str:
    groups = []
    for category in FactCategory:
        lines = [_fact_line(f) for f in request.facts if f.category is category]
        groups.append(f"## {category.value}\n" + ("\n".join(lines) if lines else "(none)"))
    parts = [block(Tag.FACTS, "\n\n".join(groups))]
    if request.correction:
        parts.append(block(Tag.CORRECTION, request.correction))
    parts.append(_MEMORY_INSTRUCTION)
    return "\n\n".join(parts)


def parse_memory_input(user_text: str) -> MemoryRequest:
    block = one(user_text, Tag.FACTS)
    if block is None:
        raise ValueError("no <facts> block in the message")
    facts: list[Fact] = []
    category: FactCategory | None = None
    for line in block[1].splitlines():
        if line.startswith("## "):
            category = FactCategory(line[3:].strip())
        elif (match := _FACT_LINE.match(line)) and category is not None:
            raw = match.group("date")
            facts.append(
                Fact(
                    category=category,
                    text=match.group("text"),
                    date=None if raw == "undated" else date.fromisoformat(raw),
                    from_signal=match.group("own") is not None,
                )
            )
    correction = one(user_text, Tag.CORRECTION)
    return MemoryRequest(facts=tuple(facts), correction=correction[1] if correction else None)
