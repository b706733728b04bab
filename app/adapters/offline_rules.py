"""The offline provider's rules: first-person statements → facts, in the user's own words.

Each rule is anchored at the start of a sentence (after a filler such as "so," or "btw"), so
"What if I live in Paris?" or "Pretend I'm a pirate" are not facts. Questions are skipped.
Facts are rewritten to the third person ("I live in Berlin" → "The user lives in Berlin.") like
the model's facts, so consolidation treats both providers alike.

A first-person sentence with a calendar date ("the deadline is 15 June 2026", "my goal is to
pass N3 in December 2026") is an Important Date, whatever else it matches, when it names a
dated kind of thing (deadline, due, wedding, exam…), and otherwise when no other rule took it.
A liking whose object only points back into the conversation ("I like the second one", "I love
it") is not a durable preference. A named partner ("my partner Tomás…", "Jonas and I have been
together…", "I'm married to Jonas") goes under People. Custom instructions' "How I want
answers" part is about answers: Preferences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from app.domain import Fact, FactCategory, UserSignal

__all__ = ["fact_from_sentence", "facts_from_signals", "facts_from_text", "user_text"]

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
    "care a lot about": "cares a lot about", "care deeply about": "cares deeply about",
    "care so much about": "cares so much about",
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
    pointer_check: bool = False

    def matches(self, sentence: str) -> re.Match[str] | None:
        match = self.pattern.match(sentence)
        if match and self.pointer_check and _POINTER.match(match["x"]):
            return None
        return match

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


def _rule(
    category: FactCategory, pattern: str, template: str, *, pointer_check: bool = False
) -> _Rule:
    return _Rule(category, re.compile(_FILLER + pattern + r"[.!]*$", re.I), template, pointer_check)


_PEOPLE = (
    r"wife|husband|partner|girlfriend|boyfriend|fiancée?|sons?|daughters?|kids|children|mom|mum|"
    r"mother|dad|father|brother|sister|best friend|friend|boss|manager|co-?founder|dog|cat"
)
_SPOUSE = r"wife|husband|partner|girlfriend|boyfriend|fiancée?|spouse"
# A capitalised name (case-sensitive inside the case-blind rules), not a capitalised filler.
_NAME = (
    r"(?-i:(?!(?:And|But|The|So|It|We|Is|Was|Has|Had|Will|Just|Really|Also|Always|Never)\b)"
    r"[A-Z][\w'-]*[a-z\u00e0-\u00ff][\w'-]*)"
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
        r"(?:hi|hey|hello)[,!]? (?:it's |this is )?(?P<name>" + _NAME + r") here\b.{0,80}",
        "The user's name is {name}",
    ),
    _rule(
        C.PEOPLE,
        _I_AM + r"(?P<v>married|engaged) to (?P<name>" + _NAME + r")(?P<x>.{0,100})",
        "The user is {v} to {name}{x}",
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
    # "My partner Tomás wants a herb corner, so…": the general rule stops at the comma.
    _rule(
        C.PEOPLE,
        rf"my (?P<rel>{_PEOPLE}),? (?P<name>" + _NAME + r")\b(?:[ ,;].{0,200})?",
        "The user's {rel} is {name}",
    ),
    _rule(
        C.PEOPLE,
        r"(?P<name>" + _NAME + r") and i (?:have been|'ve been|are|got|have) "
        r"(?:together|married|engaged|dating|a couple)\b.{0,120}",
        "{name} is the user's partner",
    ),
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
        pointer_check=True,
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
        C.BELIEFS_VALUES,
        r"i (?P<v>believe|value|care (?:a lot |deeply |so much )?about) (?P<x>.{2,140})",
        "The user {v} {x}",
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

# A calendar date: "15 June 2026", "June 15, 2026", "15th of June", "June 15", "December 2026",
# "2026-06-15". Without a year the month must be capitalised ("I may 2 things" is not a date).
_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d\d"
_DATE = re.compile(
    rf"\b(?:{_DAY}(?: of)? {_MONTHS},? {_YEAR}|{_MONTHS} {_DAY},? {_YEAR}|{_MONTHS} {_YEAR}|"
    rf"(?-i:{_DAY}(?: of)? {_MONTHS}|{_MONTHS} {_DAY}(?!\d))|{_YEAR}-\d\d-\d\d)\b",
    re.I,
)
_DATED_KIND = re.compile(
    r"\b(?:deadline|due|wedding|birthday|anniversary|exam|appointment|interview|flight|trip|"
    r"moving|move|launch|conference|party|surgery|graduation|starts?|begins?)\b",
    re.I,
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'll|my|our|we|we're)\b", re.I)
_HYPOTHETICAL = re.compile(r"^(?:if|what if|suppose|imagine|pretend|let's say|say)\b", re.I)
_NOTE_LABEL = re.compile(r"^(?:reminder|note|fyi|heads up|update|btw)\s*[:,-]\s*", re.I)
_DATED_LEADS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^i(?: am|'m) ", re.I), "The user is "),
    (re.compile(r"^i(?: have|'ve) ", re.I), "The user has "),
    (re.compile(r"^i(?: will|'ll) ", re.I), "The user will "),
    (re.compile(r"^i was ", re.I), "The user was "),
    (re.compile(r"^(?:my|our) ", re.I), "The user's "),
    (re.compile(r"^i (?=\w+ed\b)", re.I), "The user "),  # a regular past tense needs no -s
)
# The object of a liking that only points back into the conversation: "the second one", "it",
# "that idea a lot". Up to three words may follow ("this one better").
_POINTER = re.compile(
    r"^(?:it|this|that|these|those|them|both|either|neither|one|yours|"
    r"the (?:first|second|third|fourth|fifth|last|other|latter|former|previous|next|same|new|old|"
    r"above|below|original)\b|"
    r"(?:the|this|that|these|those|your) (?:ones?|options?|versions?|ideas?|drafts?|"
    r"suggestions?|answers?|approach|plan|names?|headlines?|titles?|list)\b)"
    r"(?:\W+\w+){0,3}\W*$",
    re.I,
)

_THIRD_PERSON = re.compile(r"^(?:the )?user(?P<s>'s)? (?P<x>.{2,200})$", re.I)
# Custom instructions arrive labelled ("About me: …", "Instructions: …"): the label is not theirs.
_LABEL = re.compile(r"^(?:about me|about you|my profile|instructions|profile)\s*:\s*", re.I)
# Custom instructions' second part (our reader labels it "How I want answers"): about answers.
_ANSWERS_LABEL = re.compile(
    r"^(?:how i want answers|how i want you to respond|instructions)\s*:\s*", re.I
)
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


def _dated(sentence: str) -> Fact | None:
    """A first-person statement with a calendar date, as an Important Date in the third person."""
    sentence = _NOTE_LABEL.sub("", sentence)
    if not (_DATE.search(sentence) and _FIRST_PERSON.search(sentence)):
        return None
    if _HYPOTHETICAL.match(sentence):
        return None
    for lead, replacement in _DATED_LEADS:
        if lead.match(sentence):
            return Fact(C.IMPORTANT_DATES, _finish(lead.sub(replacement, sentence, count=1)))
    said = _third(sentence).rstrip(".!")
    said = said[:1].lower() + said[1:]
    return Fact(C.IMPORTANT_DATES, _finish(f"The user noted: {said}"))


def _by_rule(sentence: str) -> Fact | None:
    for rule in _RULES:
        match = rule.matches(sentence)
        if match:
            return Fact(category=rule.category, text=_finish(rule.render(match)))
    return None


def fact_from_sentence(sentence: str) -> Fact | None:
    """The fact one sentence states, if a rule recognises it (see the module docstring)."""
    if _DATED_KIND.search(sentence) and (dated := _dated(sentence)):
        return dated
    return _by_rule(sentence) or _dated(sentence)


def facts_from_text(text: str, *, limit: int = _MAX_FACTS) -> list[Fact]:
    """Facts from first-person sentences; at most `limit`, in order, no duplicates."""
    facts: dict[str, Fact] = {}
    for sentence in _sentences(text):
        fact = fact_from_sentence(sentence)
        if fact is not None:
            facts.setdefault(fact.text.lower(), fact)
        if len(facts) >= limit:
            break
    return list(facts.values())


def _classify(text: str) -> FactCategory:
    for category, pattern in _KEYWORDS:
        if pattern.search(text):
            return category
    return C.ABOUT_ME


def _signal_sentences(text: str) -> Iterator[tuple[str, bool]]:
    """(sentence, whether it is about how to answer) of a signal, line by line: a line that
    opens with an answers label makes it and the lines after it about answers."""
    about_answers = False
    for line in text.splitlines():
        if _ANSWERS_LABEL.match(line.strip()):
            about_answers = True
            line = _ANSWERS_LABEL.sub("", line.strip())
        elif _LABEL.match(line.strip()):
            about_answers = False
        for sentence in _sentences(line):
            yield sentence, about_answers


def facts_from_signals(signals: Iterable[UserSignal], *, limit: int = 40) -> list[Fact]:
    """Every statement of a signal is a fact: the user wrote it about themselves on purpose."""
    facts: dict[str, Fact] = {}
    for signal in signals:
        for sentence, about_answers in _signal_sentences(signal.text):
            found = facts_from_text(sentence, limit=1)
            if found:
                fact = found[0]
            elif about_answers:
                said = sentence.strip().rstrip(".!")
                fact = Fact(C.PREFERENCES, f'The user wants answers like this: "{said}."')
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
