"""The offline provider's five sections (app/adapters/offline_llm.py): from the MEMORY facts the
rules found and simple statistics of the conversation sample — message lengths, question share,
code, casual and polite words, frequent words — each section naming its source."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from app.domain import FactCategory
from app.processors.composing.sections import derive_ai_name
from app.sections import NO_DATA

__all__ = ["offline_sections"]

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


def offline_sections(conversations: str, memory_md: str) -> dict[str, Any]:
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
