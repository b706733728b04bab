"""MEMORY: the durable facts as markdown under the DESIGN §7 headings.

`generate_memory` asks the model once, checks the reply, asks once more with a correction when
it is empty, placeholder-only, missing a heading, or says "no data" for a category that has
facts, and otherwise falls back to `render_memory` — a deterministic rendering that is always
right about which categories have facts. The fallback is for replies that are unusable, never
for a provider that is unavailable: `LLMUnavailable` propagates (the provider breaker waits such
outages out before it could reach here; without it the job retries), as does `LLMFatal`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from app.domain import Fact, FactCategory
from app.errors import LLMError, LLMFatal, LLMUnavailable
from app.ports import LLM, MemoryRequest
from app.processors.composing.consolidation import ConsolidatedFact
from app.processors.ledger import CostLedger
from app.processors.prompts import EMPTY_CATEGORY_LINE

__all__ = [
    "EMPTY_CATEGORY_LINE",
    "MemoryOutcome",
    "generate_memory",
    "memory_problems",
    "render_memory",
    "to_plain_facts",
]

STEP = "generate_memory"
_log = structlog.get_logger(__name__)
_HEADING = re.compile(r"^##\s+(.+?)\s*$")
_PLACEHOLDER = re.compile(
    r"^[\s*_\-•>]*(no data( yet)?|nothing (recorded|known|noted)( yet)?|none( yet)?|n/?a|tbd|"
    r"not enough data|no (facts|information|info)( available| yet)?|unknown|\.\.\.|…|-)"
    r"[\s.!*_]*$",
    re.IGNORECASE,
)

AnyFact = ConsolidatedFact | Fact


@dataclass(frozen=True, slots=True)
class MemoryOutcome:
    markdown: str
    source: Literal["llm", "fallback"]
    calls: int


def _fact_date(fact: AnyFact) -> str | None:
    when = fact.last_date if isinstance(fact, ConsolidatedFact) else fact.date
    return when.isoformat() if when else None


def render_memory(facts: Sequence[AnyFact], *, note: str | None = None) -> str:
    """Deterministic MEMORY: every heading in order, one bullet per fact in the given order.

    No title, like the model's reply (prompts.MEMORY_SYSTEM): the text starts with `note` if
    given, else with `## About Me`.
    """
    by_category: dict[FactCategory, list[AnyFact]] = {c: [] for c in FactCategory}
    for fact in facts:
        by_category[fact.category].append(fact)
    lines: list[str] = [note, ""] if note else []
    for category in FactCategory:
        lines += [f"## {category.value}", ""]
        items = by_category[category]
        if not items:
            lines.append(EMPTY_CATEGORY_LINE)
        for fact in items:
            when = _fact_date(fact)
            lines.append(f"- {fact.text} ({when})" if when else f"- {fact.text}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _sections(markdown: str) -> dict[str, list[str]]:
    """Body lines (non-blank) under each `## ` heading, keyed by the heading's lowercase text."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in markdown.splitlines():
        match = _HEADING.match(line.strip())
        if match:
            current = found.setdefault(match.group(1).strip().lower(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return found


def memory_problems(markdown: str, facts: Sequence[AnyFact]) -> list[str]:
    """What is wrong with a MEMORY reply, in words the model can act on; [] when it is fine."""
    if not markdown.strip():
        return ["the reply was empty"]
    sections = _sections(markdown)
    with_facts = {fact.category for fact in facts}
    problems: list[str] = []
    real_lines = 0
    for category in FactCategory:
        body = sections.get(category.value.lower())
        if body is None:
            problems.append(f"the heading '## {category.value}' is missing")
            continue
        content = [line for line in body if not _PLACEHOLDER.match(line)]
        content = [line for line in content if line != EMPTY_CATEGORY_LINE]
        real_lines += len(content)
        if category in with_facts and not content:
            problems.append(
                f"'## {category.value}' says there is no data, but facts were given for it"
            )
    if facts and real_lines == 0:
        problems.insert(0, "the reply holds only placeholders although facts were given")
    return problems


def to_plain_facts(facts: Sequence[AnyFact]) -> tuple[Fact, ...]:
    """The request's fact shape: consolidated facts keep their latest date and first source."""
    plain: list[Fact] = []
    for fact in facts:
        if isinstance(fact, Fact):
            plain.append(fact)
        else:
            plain.append(
                Fact(
                    category=fact.category,
                    text=fact.text,
                    conversation_id=fact.sources[0] if fact.sources else None,
                    date=fact.last_date,
                    from_signal=fact.from_signal,
                )
            )
    return tuple(plain)


async def generate_memory(
    facts: Sequence[AnyFact], *, llm: LLM, ledger: CostLedger
) -> MemoryOutcome:
    """One call (two at most). An unusable reply — or a request the model could not process —
    gets one correction, then the deterministic rendering; `LLMFatal` and `LLMUnavailable`
    propagate."""
    plain = to_plain_facts(facts)
    correction: str | None = None
    calls = 0
    for attempt in (1, 2):
        try:
            reply = await llm.write_memory(MemoryRequest(facts=plain, correction=correction))
        except (LLMFatal, LLMUnavailable):
            raise
        except LLMError as exc:
            ledger.record_failure(STEP, type(exc).__name__)
            _log.warning("memory.reply_unusable", attempt=attempt, error=type(exc).__name__)
            correction = (
                "Your previous reply could not be used. Write the MEMORY markdown with every "
                f"heading in order; write the one line '{EMPTY_CATEGORY_LINE}' only under a "
                "heading with no facts."
            )
            continue
        calls += 1
        ledger.record(STEP, reply.call)
        problems = memory_problems(reply.value, facts)
        if not problems:
            return MemoryOutcome(markdown=reply.value.strip() + "\n", source="llm", calls=calls)
        ledger.record_failure(STEP, "rejected_reply")
        _log.warning("memory.reply_rejected", attempt=attempt, problems=len(problems))
        correction = (
            "Your previous MEMORY was not usable: "
            + "; ".join(problems)
            + ". Write every heading in order and list the given facts under their category; "
            f"write the one line '{EMPTY_CATEGORY_LINE}' only under a heading with no facts."
        )
    return MemoryOutcome(markdown=render_memory(facts), source="fallback", calls=calls)
