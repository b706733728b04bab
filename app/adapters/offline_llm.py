"""OfflineLLM: the default provider when no API key is set. Deterministic and rule-based.

It lets the whole pipeline run on a fresh machine and in tests, and says what it is: the job
records provider "offline", MEMORY opens with a note, and the sections name their source.
Facts are the user's own first-person statements and signals (`offline_rules`); MEMORY is
`render_memory` of them; sections come from those facts and simple statistics of the sample
(message lengths, question share, code, frequent words). Usage is estimated as characters / 4
so ledgers and benchmarks are meaningful; at the offline price it costs nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from app.adapters.offline_rules import facts_from_signals, facts_from_text, user_text
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
from app.processors.composing.sections import derive_ai_name
from app.sections import NO_DATA

__all__ = ["OFFLINE_MEMORY_NOTE", "OfflineLLM", "answer_extraction"]

OFFLINE_MEMORY_NOTE = (
    "_Built by offline rule-based analysis (no language model): the facts are the user's own "
    "first-person statements and saved notes._"
)
_SOURCE = "offline rule-based analysis"
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]{3,}")
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
_CASUAL = re.compile(r"\b(?:lol|haha+|lmao|gonna|wanna|btw|tbh|u|ya|yep|nope)\b", re.I)
_LAUGH = re.compile(r"\b(?:lol|haha+|lmao|hehe)\b|😂|🤣", re.I)
_POLITE = re.compile(r"\b(?:please|thanks|thank you|thx|appreciate)\b", re.I)
_CODE = re.compile(r"```|\bdef \w+\(|\bimport \w+|\bfunction \w+\(|;\s*$|\bSELECT\b", re.M)
_STOP_WORDS = (
    "that this with have what from your there about would could should which their them they "
    "been were will just like into than then also some more when make want need know does doing "
    "help here how please thanks thank really using used something anything other user "
    "assistant conversation these those very much only even because"
)
_STOP = frozenset(_STOP_WORDS.split())
# Words that end a liking without being part of it: "reading manga about gardening though".
_TRAILING = re.compile(
    r"(?:,? (?:though|too|as well|a lot|so much|very much|anyway|lol|haha))+\.?$", re.I
)


@dataclass(frozen=True, slots=True)
class _Stats:
    messages: int
    avg_chars: int
    question: float
    code: float
    emoji: float
    casual: float
    laugh: float
    polite: float
    exclaim: float
    topics: tuple[str, ...]


def _sample_conversations(conversations: str) -> list[tuple[str, list[str]]]:
    """(title, user messages) of each conversation of a v2 sample (DESIGN §6 layout)."""
    found: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in conversations.splitlines():
        if line.startswith("=== Conversation:"):
            found.append((line.split('"')[1] if line.count('"') >= 2 else "", []))
            current = None
        elif line.startswith("User:"):
            if not found:
                found.append(("", []))
            current = [line[5:].strip()]
            found[-1][1].append("")
        elif line.startswith("Assistant:"):
            current = None
        if current is not None:
            if not line.startswith("User:"):
                current.append(line)
            found[-1][1][-1] = "\n".join(current)
    return [(title, [m for m in messages if m.strip()]) for title, messages in found]


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP]


def _topics(sample: list[tuple[str, list[str]]]) -> tuple[str, ...]:
    """Frequent words that recur: in two titles or more, or in the user's words of three
    conversations or more. A word of one conversation ("competition", "pitch") is that
    conversation's subject, not an interest."""
    counts = Counter(
        w for title, messages in sample for t in (title, title, *messages) for w in _words(t)
    )
    in_titles = Counter(w for title, _ in sample for w in set(_words(title)))
    in_conversations = Counter(
        w for title, messages in sample for w in set(_words(" ".join((title, *messages))))
    )
    recurring = [
        w
        for w, c in counts.most_common()
        if c >= 2 and (in_titles[w] >= 2 or in_conversations[w] >= 3)
    ]
    return tuple(recurring[:8])


def _stats(conversations: str) -> _Stats:
    sample = _sample_conversations(conversations)
    messages = [m for _, conversation in sample for m in conversation]
    n = max(len(messages), 1)

    def share(pattern: re.Pattern[str]) -> float:
        return sum(1 for m in messages if pattern.search(m)) / n

    return _Stats(
        messages=len(messages),
        avg_chars=sum(len(m) for m in messages) // n,
        question=sum(1 for m in messages if "?" in m) / n,
        code=share(_CODE),
        emoji=share(_EMOJI),
        casual=share(_CASUAL),
        laugh=share(_LAUGH),
        polite=share(_POLITE),
        exclaim=sum(1 for m in messages if "!" in m) / n,
        topics=_topics(sample),
    )


def _memory_facts(memory_md: str) -> dict[FactCategory, list[str]]:
    found: dict[FactCategory, list[str]] = {c: [] for c in FactCategory}
    by_name = {c.value.lower(): c for c in FactCategory}
    current: FactCategory | None = None
    for line in memory_md.splitlines():
        if line.startswith("## "):
            current = by_name.get(line[3:].strip().lower())
        elif (
            current is not None and line.startswith("- ") and "nothing recorded" not in line.lower()
        ):
            found[current].append(re.sub(r" \(\d{4}-\d{2}-\d{2}\)$", "", line[2:].strip()))
    return found


# A place: a capitalised phrase after "lives in", "based in", "from", up to punctuation or "and".
_LOCATION = r"\b(?:lives in|based in|is from|located in) ((?-i:[A-Z])[\w' -]*?)(?: and |[,.;]|$)"
# A role: "works as …" / "is a …", up to where the sentence moves on.
_OCCUPATION = (
    r"^The user (?:works as|is) (an? (?!\w+ (?:of|about)\b)[\w' -]+?)"
    r"(?: based| in | at | from | and |[,.;]|$)"
)


def _find(facts: list[str], pattern: str) -> str:
    """The first fact's capture group 1 (every pattern has exactly one)."""
    for fact in facts:
        match = re.search(pattern, fact)
        if match:
            return match.group(1).rstrip(".")
    return NO_DATA


def _sections(conversations: str, memory_md: str) -> dict[str, Any]:
    s = _stats(conversations)
    facts = _memory_facts(memory_md)
    about, prefs = facts[FactCategory.ABOUT_ME], facts[FactCategory.PREFERENCES]
    name = _find(about, r"The user's name is ([\w' -]+)")
    depth = (
        "brief" if s.avg_chars < 150 else "moderately detailed" if s.avg_chars < 500 else "detailed"
    )
    technical, curious = s.code >= 0.1, s.question >= 0.4
    casual, polite = s.casual >= 0.05 or s.laugh >= 0.02, s.polite >= 0.1
    tone = (
        "Relaxed and informal" if casual else "Warm and courteous" if polite else "Neutral, direct"
    )
    dislikes = [
        f for f in prefs if re.search(r"\b(?:hates|dislikes|can't stand|doesn't like)\b", f)
    ]
    likes = [
        _TRAILING.sub("", m.group(1)).rstrip(".")
        for f in prefs
        if (m := re.search(r"\b(?:likes|loves|enjoys|really likes|really loves) (.+)", f))
    ]
    topics = list(s.topics)
    traits = [
        t
        for t, on in (
            ("curious", curious),
            ("technical", technical),
            ("courteous", polite),
            ("playful", casual),
            ("enthusiastic", s.exclaim >= 0.15),
            ("reflective", s.avg_chars >= 500),
        )
        if on
    ]
    return {
        "soul": {
            "communication_style": f"{depth.capitalize()} messages (about {s.avg_chars} "
            f"characters on average over {s.messages}); {s.question:.0%} ask a question. "
            f"Estimated by {_SOURCE}.",
            "personality_traits": traits,
            "tone_preferences": tone,
            "boundaries": "Avoid: " + "; ".join(dislikes[:3]) if dislikes else NO_DATA,
            "humor_style": "Light and casual (laughs in text)" if s.laugh >= 0.02 else NO_DATA,
            "formality_level": "Informal"
            if casual
            else "Polite, semi-formal"
            if polite
            else "Neutral",
            "emotional_patterns": "Expressive: often uses exclamation marks"
            if s.exclaim >= 0.15
            else NO_DATA,
        },
        "identity": {
            "ai_name": derive_ai_name(" ".join(topics) + name),
            "archetype": "Technical collaborator"
            if technical
            else "Curious guide"
            if curious
            else "Thinking partner"
            if s.avg_chars >= 500
            else "Practical companion",
            "vibe": f"{tone}; at home with {', '.join(topics[:3])}" if topics else tone,
            "emoji_style": "Occasional emoji, as the user uses them"
            if s.emoji >= 0.05
            else "No emoji: the user rarely uses them",
            "signature_greeting": f"Hi{'' if name == NO_DATA else ' ' + name} — what are we "
            "working on today?",
        },
        "user": {
            "name": name,
            "location": _find(about, _LOCATION),
            "occupation": _find(about, _OCCUPATION),
            "relationships": facts[FactCategory.PEOPLE][:8],
            "interests": (likes + topics)[:8],
            "life_context": " ".join(about[:3]) if about else NO_DATA,
            "preferred_address": name,
        },
        "agents": {
            "response_style": f"Match the user's {depth} messages; lead with the answer.",
            "behavioral_rules": [
                r
                for r, on in (
                    ("Answer the question first, then explain.", curious),
                    ("Show code in fenced blocks with a short explanation.", technical),
                    ("Keep replies short unless asked for more.", depth == "brief"),
                    ("Respect the user's stated preferences in MEMORY.", bool(prefs)),
                )
                if on
            ],
            "context_adaptation": f"{tone} by default; follow the user's lead on depth.",
            "memory_directives": f"Use the MEMORY facts; they come from {_SOURCE} of the user's "
            "own statements, so confirm before relying on anything sensitive.",
            "do_not": [f"Do not bring up what the user dislikes: {d}" for d in dislikes[:3]],
        },
        "tools": {
            "likely_usage": [
                u
                for u, on in (
                    ("coding and debugging", technical),
                    ("questions and explanations", curious),
                    ("topics: " + ", ".join(topics[:5]), bool(topics)),
                )
                if on
            ],
            "capabilities_emphasis": ["code generation and review"] if technical else [],
            "output_preferences": "Code blocks with short explanations"
            if technical
            else "Clear prose, organised when long",
            "depth_preference": depth.capitalize(),
        },
    }


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
        sections = _sections(request.conversations, request.memory_md)
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
