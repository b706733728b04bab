"""OfflineLLM: the default provider when no API key is set. Deterministic and rule-based.

It lets the whole pipeline run on a fresh machine and in tests, and says what it is: the job
records provider "offline", MEMORY opens with a note, and the sections name their source.
Facts are the user's own first-person statements and signals (`offline_rules`); MEMORY is
`render_memory` of them; sections come from those facts and simple statistics of the sample
(message lengths, question share, code, frequent words: `offline_sections`). Usage is
estimated as characters / 4 so ledgers and benchmarks are meaningful; at the offline price it
costs nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from app.adapters.offline_rules import facts_from_signals, facts_from_text, user_text
from app.adapters.offline_sections import offline_sections
from app.domain import Fact, FactCategory
from app.ports import (
    ExtractionRequest,
    ExtractionResult,
    LLMCall,
    LLMReply,
    LLMUsage,
    MemoryRequest,
    MessageBatches,
    ReduceRequest,
    SectionsRequest,
)
from app.processors.composing.memory import render_memory

__all__ = ["OFFLINE_MEMORY_NOTE", "OfflineLLM", "answer_extraction"]

OFFLINE_MEMORY_NOTE = (
    "_Built by offline rule-based analysis (no language model): the facts are the user's own "
    "first-person statements and saved notes._"
)

# Words of a fact that carry its content: not the templates' ("The user wrote about themselves").
_FACT_STOP_WORDS = (
    "the a an and or but of to in on at for from with by as is are was were be been has have had "
    "their they them they're user user's wrote themselves noted wants answers like this that "
    "it its her his she he"
)
_FACT_STOP = frozenset(_FACT_STOP_WORDS.split())
_SAME_SHARE = 0.75  # of the smaller fact's content words found in the other
_SAME_MIN = 3  # shared content words, so "The user is vegetarian" never swallows a longer fact


def _content(text: str) -> frozenset[str]:
    """Content words, crudely stemmed so "redesigning" meets "redesign" and "pots" meets "pot"."""
    stems = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _FACT_STOP or (len(word) < 3 and not word.isdigit()):
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        stems.add(word.removesuffix("e") if len(word) > 3 else word)
    return frozenset(stems)


def _said_once(facts: Sequence[Fact]) -> list[Fact]:
    """The facts, each under one heading. Two facts under different headings are one when at
    least `_SAME_MIN` content words, and `_SAME_SHARE` of the smaller's, are shared: typically a
    saved note's paraphrase (classified by keywords, About Me when none) beside the user's own
    sentence (classified by its rule). The one under About Me, the rules' catch-all, goes; else
    the one with fewer content words; else the later. A heading that had facts is never
    emptied: the MEMORY check would reject the reply. Repeats under one heading are
    consolidation's business, not this."""
    words = [_content(f.text) for f in facts]
    left = Counter(f.category for f in facts)
    dropped: set[int] = set()
    for i, j in combinations(range(len(facts)), 2):
        if i in dropped or j in dropped or facts[i].category is facts[j].category:
            continue
        shared = len(words[i] & words[j])
        if shared < _SAME_MIN or shared < _SAME_SHARE * min(len(words[i]), len(words[j])):
            continue
        for loser in sorted((i, j), key=lambda k: (_specific(facts[k]), len(words[k]), -k)):
            if left[facts[loser].category] > 1:
                dropped.add(loser)
                left[facts[loser].category] -= 1
                break
    return [fact for k, fact in enumerate(facts) if k not in dropped]


def _specific(fact: Fact) -> bool:
    return fact.category is not FactCategory.ABOUT_ME


def answer_extraction(request: ExtractionRequest) -> ExtractionResult:
    """The rules, excerpt by excerpt: every excerpt of a packed request is answered. Plain
    synchronous work, so estimates can call it without an event loop."""
    found: list[list[Fact] | None] = []
    for excerpt in request.excerpts:
        facts = facts_from_signals(excerpt.signals) if excerpt.signals else []
        if excerpt.text:
            facts += facts_from_text(user_text(excerpt.text))
        found.append(facts)
    return ExtractionResult(tuple(found))


class OfflineLLM:
    """Implements `app.ports.LLM` without a network: rules and statistics, labelled as such."""

    _batches: MessageBatches | None = None

    @property
    def provider(self) -> str:
        return "offline"

    @property
    def model(self) -> str:
        return "offline-rules-v2"

    def _call(self, task: str, prompt: str, output: str) -> LLMCall:
        usage = LLMUsage(input_tokens=len(prompt) // 4, output_tokens=len(output) // 4)
        return LLMCall(task=task, model=self.model, usage=usage)

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        result = answer_extraction(request)
        prompt = "".join(e.text + "".join(s.text for s in e.signals) for e in request.excerpts)
        output = "".join(f.text for facts in result.facts for f in facts or ())
        return LLMReply(result, self._call("extract_facts", prompt, output))

    async def reduce_facts(self, request: ReduceRequest) -> LLMReply[list[str]]:
        """Drop exact duplicates and facts whose words another fact contains; keep the first
        `target_count` (the input is newest first)."""
        words = [frozenset(re.findall(r"\w+", f.lower())) for f in request.facts]
        kept: list[str] = []
        for i, fact in enumerate(request.facts):
            covered = any(
                words[i] < words[j] or (words[i] == words[j] and j < i)
                for j in range(len(request.facts))
                if j != i
            )
            if not covered:
                kept.append(fact)
        kept = kept[: max(1, request.target_count)]
        prompt = "\n".join(request.facts)
        return LLMReply(kept, self._call("reduce_facts", prompt, "\n".join(kept)))

    async def write_memory(self, request: MemoryRequest) -> LLMReply[str]:
        markdown = render_memory(_said_once(request.facts), note=OFFLINE_MEMORY_NOTE)
        prompt = "\n".join(f.text for f in request.facts)
        return LLMReply(markdown, self._call("write_memory", prompt, markdown))

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, Any]]:
        sections = offline_sections(request.conversations, request.memory_md)
        output = json.dumps(sections)
        prompt = request.conversations + request.memory_md
        return LLMReply(sections, self._call("write_sections", prompt, output))

    def batches(self) -> MessageBatches:
        """Batch mode in-process: a batch of rule-based answers that ends at once."""
        if self._batches is None:
            from app.adapters.instant_batches import InstantBatches

            self._batches = InstantBatches(self)
        return self._batches

    async def aclose(self) -> None:
        return None

    async def probe(self) -> None:
        """The rules are always available."""
