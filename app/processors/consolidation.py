"""Merge the facts of all chunks into one de-duplicated list that keeps every source.

Two facts are the same when, in the same category, their normalised texts are equal, or when
rapidfuzz's `token_set_ratio` is at least `NEAR_DUPLICATE_THRESHOLD` and neither says something
the other denies (negation words, numbers, a word swapped for an unrelated one).
`token_set_ratio` scores 100 when one fact's words are a subset of the other's ("I live in
Berlin" / "I live in Berlin, Germany"), which is the common near-duplicate in extracted facts;
then the fuller sentence is kept, so nothing is lost.
Otherwise the newer sentence wins. Much below 90 different facts merge ("The user lives in
Berlin" / "…in Paris" scores 85): see docs/EXTRACTION.md.

Speed: exact duplicates merge through a dict; fuzzy comparison is blocked by category and the
prefixes of the first two content words, and each fact is compared (`process.extract`, in C)
against at most `_MAX_BLOCK` recent groups of its block: ~100k facts in about 3 s, 15 s when all
fall in one block (docs/EXTRACTION.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from rapidfuzz import fuzz, process

from app.domain import Fact, FactCategory

__all__ = ["NEAR_DUPLICATE_THRESHOLD", "ConsolidatedFact", "consolidate", "normalise_text"]

NEAR_DUPLICATE_THRESHOLD = 90
_MAX_BLOCK = 200
_CANDIDATES = 5
_SAME_WORD = 80  # fuzz.ratio of two forms of one word (lives/lived 80, Anna/Anne 75)
_WORD = re.compile(r"[\w']+")
_SPACE = re.compile(r"\s+")
_STOP = frozenset(
    {
        *("i", "i'm", "im", "me", "my", "we", "our", "the", "a", "an", "is", "am", "are"),
        *("was", "were", "to", "of", "in", "on", "at", "and", "or", "for", "with"),
        *("user", "user's", "their", "they", "they're"),
    }
)
_NEGATIONS = frozenset(
    {
        *("not", "no", "never", "don't", "dont", "doesn't", "doesnt", "isn't", "isnt"),
        *("wasn't", "won't", "can't", "cannot", "didn't", "hate", "hates", "dislike"),
        *("dislikes", "stopped", "quit", "former", "formerly"),
    }
)


@dataclass(frozen=True, slots=True)
class ConsolidatedFact:
    category: FactCategory
    text: str
    sources: tuple[str, ...]
    first_date: date | None
    last_date: date | None
    count: int
    from_signal: bool


@dataclass(slots=True)
class _Group:
    category: FactCategory
    text: str
    words: frozenset[str]
    text_date: date | None
    sources: dict[str, None] = field(default_factory=dict)
    first_date: date | None = None
    last_date: date | None = None
    count: int = 0
    from_signal: bool = False

    def absorb(self, fact: Fact, text: str, words: frozenset[str]) -> None:
        if fact.conversation_id:
            self.sources[fact.conversation_id] = None
        self.count += 1
        self.from_signal = self.from_signal or fact.from_signal
        if fact.date is not None:
            if self.first_date is None or fact.date < self.first_date:
                self.first_date = fact.date
            if self.last_date is None or fact.date > self.last_date:
                self.last_date = fact.date
        if words > self.words:
            keep_new = True  # strictly fuller: says everything the kept one says, and more
        elif words < self.words:
            keep_new = False
        else:  # a different wording: the newer one wins (facts arrive oldest first)
            keep_new = fact.date is not None and (
                self.text_date is None or fact.date >= self.text_date
            )
        if keep_new:
            self.text, self.words, self.text_date = text, words, fact.date

    def freeze(self) -> ConsolidatedFact:
        return ConsolidatedFact(
            category=self.category,
            text=self.text,
            sources=tuple(self.sources),
            first_date=self.first_date,
            last_date=self.last_date,
            count=self.count,
            from_signal=self.from_signal,
        )


def normalise_text(text: str) -> str:
    """One line, single spaces, a capital first letter and a full stop at the end."""
    cleaned = _SPACE.sub(" ", text).strip().strip("-*• ").strip()
    if not cleaned:
        return ""
    cleaned = cleaned[0].upper() + cleaned[1:]
    # A sentence may end inside its closing quote: 'wrote: "No emoji, please."' is finished.
    ending = cleaned.rstrip("\"'”’)")[-1:] or cleaned[-1]
    return cleaned if ending in ".!?" else cleaned + "."


def _key(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _block(words_in_order: list[str]) -> str:
    # Four-letter prefixes: a crude stem, so "lives"/"lived" land in one block.
    content = [w[:4] for w in words_in_order if w not in _STOP]
    return " ".join(content[:2])


def _compatible(a: frozenset[str], b: frozenset[str]) -> bool:
    """No merge across a negation, a differing number ("I am 34" vs "I am 35"), or a word
    replaced by an unrelated one."""
    if (a & _NEGATIONS) != (b & _NEGATIONS):
        return False
    nums_a = {w for w in a if w.isdigit()}
    nums_b = {w for w in b if w.isdigit()}
    if nums_a and nums_b and nums_a != nums_b:
        return False
    # Neither a subset of the other: merge a rewording ("lives"/"lived"), not a substitution
    # ("a dog named Rex" / "a dog named Max" scores 93 but is another dog).
    only_a, only_b = a - b, b - a
    return not (only_a and only_b) or all(any(_respelt(w, v) for v in only_b) for w in only_a)


def _respelt(a: str, b: str) -> bool:
    """Two forms of one word: "lives"/"lived", not "Anna"/"Anne" or "food12"/"food13"."""
    if any(c.isdigit() for c in a + b):
        return False
    return a[:3] == b[:3] and fuzz.ratio(a, b) >= _SAME_WORD


def consolidate(facts: Iterable[Fact]) -> list[ConsolidatedFact]:
    """De-duplicated facts, newest first (last date, then how often seen); undated facts last."""
    ordered = sorted(facts, key=lambda f: (f.date is not None, f.date or date.min))
    by_key: dict[tuple[FactCategory, str], _Group] = {}
    blocks: dict[tuple[FactCategory, str], list[tuple[str, _Group]]] = {}
    for fact in ordered:
        text = normalise_text(fact.text)
        if not text:
            continue
        key = _key(text)
        word_list = key.split()
        words = frozenset(word_list)
        group = by_key.get((fact.category, key))
        if group is None:
            block_id = (fact.category, _block(word_list))
            block = blocks.setdefault(block_id, [])
            group = _near(block, key, words)
            if group is None:
                group = _Group(fact.category, text, words, fact.date)
                block.append((key, group))
                if len(block) > _MAX_BLOCK:
                    del block[0]
            by_key[(fact.category, key)] = group
        group.absorb(fact, text, words)
    unique = {id(g): g for g in by_key.values()}.values()
    merged = [g.freeze() for g in unique]
    merged.sort(key=lambda f: (f.last_date is not None, f.last_date or date.min, f.count))
    merged.reverse()
    return merged


def _near(block: list[tuple[str, _Group]], key: str, words: frozenset[str]) -> _Group | None:
    """The best compatible match among the `_CANDIDATES` closest above the threshold."""
    if not block:
        return None
    matches = process.extract(
        key,
        [k for k, _ in block],
        scorer=fuzz.token_set_ratio,
        score_cutoff=NEAR_DUPLICATE_THRESHOLD,
        limit=_CANDIDATES,
    )
    for _, _, index in matches:
        candidate = block[index][1]
        if _compatible(words, candidate.words):
            return candidate
    return None
