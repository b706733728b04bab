"""The offline provider's rules: first-person statements → facts, in the user's own words.

Each rule is anchored at the start of a sentence (after a filler such as "so," or "btw"), so
"What if I live in Paris?" or "Pretend I'm a pirate" are not facts. Questions are skipped.
Facts are rewritten to the third person ("I live in Berlin" → "The user lives in Berlin.") like
the model's facts, so consolidation treats both providers alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from app.domain import Fact, FactCategory, UserSignal

__all__ = ["facts_from_signals", "facts_from_text", "user_text"]

C = FactCategory
_FILLER = (
    r"^(?:(?:so|well|and|but|also|actually|honestly|btw|fyi|oh|ok|okay|yes|yeah|no|hi|hey)"
    r"\b[,!.]?\s+)*"
)
_MAX_FACTS = 15
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CODE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_VERB_S = {
    "prefer": "prefers", "like": "likes", "love": "loves", "enjoy": "enjoys", "hate": "hates",
    "dislike": "dislikes", "can't stand": "can't stand", "don't like": "doesn't like",
    "really like": "really likes", "really love": "really loves", "really hate": "really hates",
    "believe": "believes", "value": "values", "care about": "cares about",
    "decided": "decided", "have decided": "has decided", "'ve decided": "has decided",
    "chose": "chose", "switched": "switched", "quit": "quit",
}  # fmt: skip
_PRONOUNS = [
    (re.compile(r"\bI'm\b"), "they're"),
    (re.compile(r"\bI am\b"), "they are"),
    (re.compile(r"\bI've\b"), "they've"),
    (re.compile(r"\bI\b"), "they"),
    (re.compile(r"\bmy\b", re.I), "their"),
    (re.compile(r"\bmyself\b", re.I), "themselves"),
    (re.compile(r"\bme\b", re.I), "them"),
    (re.compile(r"\bmine\b", re.I), "theirs"),
]


def _third(text: str) -> str:
    for pattern, replacement in _PRONOUNS:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True, slots=True)
class _Rule:
    category: FactCategory
    pattern: re.Pattern[str]
    template: str

    def render(self, match: re.Match[str]) -> str:
        """Fill the template: `v` conjugated, `name` kept, other groups made third person."""
        values = {}
        for key, value in match.groupdict(default="").items():
            if key == "v":
                verb = " ".join(value.lower().split())
                values[key] = _VERB_S.get(verb, verb)
            else:
                values[key] = value if key == "name" else _third(value)
        return self.template.format(**values)


def _rule(category: FactCategory, pattern: str, template: str) -> _Rule:
    return _Rule(category, re.compile(_FILLER + pattern + r"[.!]*$", re.I), template)


_PEOPLE = (
    r"wife|husband|partner|girlfriend|boyfriend|fiancée?|sons?|daughters?|kids|children|mom|mum|"
    r"mother|dad|father|brother|sister|best friend|friend|boss|manager|co-?founder|dog|cat"
)
_I_AM = r"i(?: am|'m) "
_RULES: tuple[_Rule, ...] = (
    _rule(
        C.ABOUT_ME,
        r"my name is (?P<name>[A-Z][\w'-]+(?: [A-Z][\w'-]+)?)",
        "The user's name is {name}",
    ),
    _rule(C.ABOUT_ME, _I_AM + r"(?P<x>\d{1,2}) years? old", "The user is {x} years old"),
    _rule(C.ABOUT_ME, r"i live in (?P<x>.{2,120})", "The user lives in {x}"),
    _rule(C.ABOUT_ME, _I_AM + r"(?:based|located) in (?P<x>.{2,120})", "The user is based in {x}"),
    _rule(C.ABOUT_ME, _I_AM + r"(?:originally )?from (?P<x>.{2,120})", "The user is from {x}"),
    _rule(C.ABOUT_ME, r"i work (?P<x>(?:as|at|for|in) .{2,140})", "The user works {x}"),
    _rule(
        C.ABOUT_ME, _I_AM + r"(?:currently )?studying (?P<x>.{2,120})", "The user is studying {x}"
    ),
    _rule(
        C.ABOUT_ME,
        _I_AM + r"(?P<x>(?:married|single|divorced|engaged|retired|vegan|vegetarian)\b.{0,100})",
        "The user is {x}",
    ),
    _rule(
        C.ABOUT_ME,
        _I_AM + r"(?P<x>an? (?!bit\b|little\b|lot\b|big fan\b|fan\b|beginner\b|newbie\b|noob\b)"
        r"[\w -]{3,60}?(?: (?:at|in|for|from|with) .{2,80})?)",
        "The user is {x}",
    ),
    _rule(C.PEOPLE, rf"my (?P<x>(?:{_PEOPLE})(?: [\w'-]+){{2,30}})", "The user's {x}"),
    _rule(
        C.PEOPLE,
        r"i have (?P<x>(?:a|an|one|two|three|four|\d+) (?:kids?|children|sons?|daughters?|dogs?|"
        r"cats?|brothers?|sisters?)\b.{0,100})",
        "The user has {x}",
    ),
    _rule(
        C.PREFERENCES,
        r"i (?P<v>prefer|really like|really love|really hate|like|love|enjoy|hate|dislike|"
        r"can't stand|don't like) (?P<x>.{2,140})",
        "The user {v} {x}",
    ),
    _rule(C.PREFERENCES, r"my favou?rite (?P<x>.{2,120})", "The user's favourite {x}"),
    _rule(
        C.PROJECTS,
        r"(?:i am|i'm|we are|we're) (?:currently )?(?P<v>building|developing|writing|creating|"
        r"making|launching|working on|starting) (?P<x>.{2,140})",
        "The user is {v} {x}",
    ),
    _rule(
        C.PROJECTS,
        r"my (?P<x>(?:side project|project|startup|app|company|business|book|thesis|website|game|"
        r"podcast) .{2,120})",
        "The user's {x}",
    ),
    _rule(C.IMPORTANT_DATES, r"(?:i was )?born (?P<x>(?:on|in) .{2,60})", "The user was born {x}"),
    _rule(C.IMPORTANT_DATES, r"my (?P<x>birthday is .{2,60})", "The user's {x}"),
    _rule(
        C.IMPORTANT_DATES,
        r"(?:our|my) (?P<x>(?:wedding|anniversary|due date|deadline) is .{2,80})",
        "The user's {x}",
    ),
    _rule(
        C.BELIEFS_VALUES, r"i (?P<v>believe|value|care about) (?P<x>.{2,140})", "The user {v} {x}"
    ),
    _rule(
        C.BELIEFS_VALUES,
        r"(?P<x>[\w ,'-]{2,80}) (?:is|are) (?:really |very )?important to me",
        "{x} matters to the user",
    ),
    _rule(
        C.DECISIONS_CONTEXT,
        r"(?:i|we) (?P<v>decided|have decided|'ve decided|chose|switched|quit) (?P<x>.{2,140})",
        "The user {v} {x}",
    ),
    _rule(C.DECISIONS_CONTEXT, _I_AM + r"planning to (?P<x>.{2,140})", "The user plans to {x}"),
)

_THIRD_PERSON = re.compile(r"^(?:the )?user(?P<s>'s)? (?P<x>.{2,200})$", re.I)
# Custom instructions arrive labelled ("About me: …", "Instructions: …"): the label is not theirs.
_LABEL = re.compile(r"^(?:about me|about you|my profile|instructions|profile)\s*:\s*", re.I)
# "I'm Maya, a landscape architect…": a capitalised name, then who they are. Case matters here,
# so "I'm tired, a bit" is never a name.
_NAME_APPOSITIVE = re.compile(
    r"^(?P<lead>i(?: am|'m)) (?P<name>(?-i:[A-Z][\w'-]+)), (?P<rest>(?:an?|the) .+)$", re.I
)
_KEYWORDS: tuple[tuple[FactCategory, re.Pattern[str]], ...] = (
    (C.PEOPLE, re.compile(rf"\b(?:{_PEOPLE}|family|parents)\b", re.I)),
    (C.IMPORTANT_DATES, re.compile(r"\b(?:born|birthday|anniversary|wedding)\b", re.I)),
    (C.PROJECTS, re.compile(r"\b(?:building|project|startup|working on|developing)\b", re.I)),
    (C.DECISIONS_CONTEXT, re.compile(r"\b(?:decided|plans? to|chose|switched)\b", re.I)),
    (C.BELIEFS_VALUES, re.compile(r"\b(?:believes?|values?|important to)\b", re.I)),
    (
        C.PREFERENCES,
        re.compile(
            r"\b(?:prefers?|likes?|loves?|enjoys?|hates?|wants?|respond|answers?|reply|"
            r"concise|brief|detailed|tone|format|bullet|explain)\b",
            re.I,
        ),
    ),
)


def user_text(excerpt: str) -> str:
    """The user's turns of an excerpt built by `build_extraction_text` (all of it if unlabelled)."""
    if "User:" not in excerpt:
        return excerpt
    kept: list[str] = []
    speaking = False
    for line in excerpt.splitlines():
        if line.startswith("User:"):
            speaking = True
            kept.append(line[5:].strip())
        elif line.startswith(("Assistant (context):", "Assistant:")):
            speaking = False
        elif speaking:
            kept.append(line)
    return "\n".join(kept)


def _sentences(text: str) -> Iterable[str]:
    text = _CODE.sub("\n", text.replace("’", "'"))
    for raw in _SENTENCE.split(text):
        sentence = _LABEL.sub("", " ".join(raw.split()).strip("*-•> "))
        if not (8 <= len(sentence) <= 220) or sentence.endswith("?"):
            continue
        if named := _NAME_APPOSITIVE.match(sentence):
            yield f"My name is {named['name']}."
            yield f"{named['lead']} {named['rest']}"
        else:
            yield sentence


def _finish(text: str) -> str:
    text = text.strip().rstrip(",;:")
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!")) else text + "."


def facts_from_text(text: str, *, limit: int = _MAX_FACTS) -> list[Fact]:
    """Facts from first-person sentences; at most `limit`, in order, no duplicates."""
    facts: dict[str, Fact] = {}
    for sentence in _sentences(text):
        for rule in _RULES:
            match = rule.pattern.match(sentence)
            if match:
                rendered = _finish(rule.render(match))
                facts.setdefault(rendered.lower(), Fact(category=rule.category, text=rendered))
                break
        if len(facts) >= limit:
            break
    return list(facts.values())


def _classify(text: str) -> FactCategory:
    for category, pattern in _KEYWORDS:
        if pattern.search(text):
            return category
    return C.ABOUT_ME


def facts_from_signals(signals: Iterable[UserSignal], *, limit: int = 40) -> list[Fact]:
    """Every statement of a signal is a fact: the user wrote it about themselves on purpose."""
    facts: dict[str, Fact] = {}
    for signal in signals:
        for sentence in _sentences(signal.text):
            found = facts_from_text(sentence, limit=1)
            if found:
                fact = found[0]
            elif third := _THIRD_PERSON.match(sentence):
                fact = Fact(
                    _classify(sentence), _finish(f"The user{third['s'] or ''} {third['x']}")
                )
            elif len(sentence.split()) >= 3:
                said = sentence.strip().rstrip(".!")
                fact = Fact(_classify(sentence), f'The user wrote about themselves: "{said}."')
            else:
                continue
            facts.setdefault(fact.text.lower(), Fact(fact.category, fact.text, from_signal=True))
            if len(facts) >= limit:
                return list(facts.values())
    return list(facts.values())
