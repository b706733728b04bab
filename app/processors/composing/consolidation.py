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

__all__ = [
    "DEFAULT_GROUP_LIMIT",
    "MAX_SOURCES",
    "NEAR_DUPLICATE_THRESHOLD",
    "ConsolidatedFact",
    "FactBook",
    "consolidate",
    "normalise_text",
]

NEAR_DUPLICATE_THRESHOLD = 90
# Reduce pre-cuts to 4 × FACT_TOKEN_BUDGET (24,000) = 96,000 tokens, at ≥ 11 tokens a fact
# (`fact_tokens` of a 20-character sentence): at most ~8,700 facts, ~3,000–4,500 at typical
# lengths. A book pruned to 15,000 (3/4 of this) only drops facts that rank below at least
# 15,000 others by the pre-cut's own priority. ~0.9 KB a group: ~18 MB when full.
DEFAULT_GROUP_LIMIT = 20_000
# Provenance kept per fact: memory uses the first, people tracing a fact need a few; `count`
# keeps how often it was seen. Without a cap a fact said in every conversation holds thousands.
MAX_SOURCES = 8
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
    """A compact record: the kept sentence, its key (its words are the group's), counts, dates,
    and at most `max_sources` conversation ids; never the facts themselves."""

    category: FactCategory
    text: str
    key: str
    text_date: date | None
    seq: int  # creation order: the last tie-break, so pruning is deterministic
    sources: list[str] = field(default_factory=list)
    first_date: date | None = None
    last_date: date | None = None
    count: int = 0
    from_signal: bool = False

    def absorb(self, fact: Fact, text: str, key: str, max_sources: int) -> None:
        cid = fact.conversation_id
        if cid and len(self.sources) < max_sources and cid not in self.sources:
            self.sources.append(cid)
        self.count += 1
        self.from_signal = self.from_signal or fact.from_signal
        if fact.date is not None:
            if self.first_date is None or fact.date < self.first_date:
                self.first_date = fact.date
            if self.last_date is None or fact.date > self.last_date:
                self.last_date = fact.date
        if key == self.key:
            keep_new = fact.date is not None and (
                self.text_date is None or fact.date >= self.text_date
            )
        else:
            words, mine = frozenset(key.split()), frozenset(self.key.split())
            if words > mine:
                keep_new = True  # strictly fuller: says everything the kept one says, and more
            elif words < mine:
                keep_new = False
            else:  # a different wording: the newer one wins
                keep_new = fact.date is not None and (
                    self.text_date is None or fact.date >= self.text_date
                )
        if keep_new:
            self.text, self.key, self.text_date = text, key, fact.date

    def rank(self) -> tuple[bool, int, date, int]:
        """Pruning order, lowest first: reduce's priority (signal, count, recency), then age."""
        return (self.from_signal, self.count, self.last_date or date.min, self.seq)

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


class FactBook:
    """Facts consolidated as they arrive, in bounded memory.

    Each fact is merged on arrival by the rules above (exact key, then near duplicate in its
    block); the book keeps one compact `_Group` per distinct fact, never the facts. It holds at
    most `limit` groups: past that, it drops the lowest by `_Group.rank` — the order in which
    reduce's `priority_cut` would drop them (user signals, then count, then recency) — down to
    three quarters of `limit`, so pruning runs once per `limit // 4` new groups. Remembered
    wordings (exact keys that map to a group) are bounded too, at `2 × limit`: past that, a
    near-duplicate wording is matched again each time it recurs instead of being remembered.
    With `limit=None` nothing is ever dropped.

    The result depends on the order facts arrive in (the first wording of a group is its block
    key; ties in date go to the later one): feed it in a deterministic order.
    """

    def __init__(self, *, limit: int | None = None, max_sources: int = MAX_SOURCES) -> None:
        self.limit = max(4, limit) if limit is not None else None
        self.max_sources = max_sources
        self.facts_in = 0
        self.groups_pruned = 0
        self.facts_pruned = 0  # the facts the pruned groups had absorbed
        self._seq = 0
        self._groups: dict[int, _Group] = {}
        self._by_key: dict[tuple[FactCategory, str], _Group] = {}
        self._blocks: dict[tuple[FactCategory, str], list[tuple[str, _Group]]] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add_all(self, facts: Iterable[Fact]) -> None:
        for fact in facts:
            self.add(fact)

    def add(self, fact: Fact) -> None:
        self.facts_in += 1
        text = normalise_text(fact.text)
        if not text:
            return
        key = _key(text)
        group = self._by_key.get((fact.category, key))
        if group is None:
            word_list = key.split()
            block = self._blocks.setdefault((fact.category, _block(word_list)), [])
            group = _near(block, key, frozenset(word_list))
            if group is None:
                group = _Group(fact.category, text, key, fact.date, self._seq)
                self._groups[self._seq] = group
                self._seq += 1
                block.append((key, group))
                if len(block) > _MAX_BLOCK:
                    del block[0]
                self._by_key[(fact.category, key)] = group
            elif self.limit is None or len(self._by_key) < 2 * self.limit:
                self._by_key[(fact.category, key)] = group
        group.absorb(fact, text, key, self.max_sources)
        if self.limit is not None and len(self._groups) > self.limit:
            self._prune(self.limit * 3 // 4)

    def _prune(self, keep: int) -> None:
        """Drop the lowest-ranked groups, and every reference to them, until `keep` remain."""
        ranked = sorted(self._groups.values(), key=_Group.rank)
        dropped = ranked[: len(ranked) - keep]
        self.groups_pruned += len(dropped)
        self.facts_pruned += sum(g.count for g in dropped)
        for group in dropped:
            del self._groups[group.seq]
        alive = self._groups
        self._by_key = {k: g for k, g in self._by_key.items() if g.seq in alive}
        blocks: dict[tuple[FactCategory, str], list[tuple[str, _Group]]] = {}
        for block_id, block in self._blocks.items():
            if kept := [entry for entry in block if entry[1].seq in alive]:
                blocks[block_id] = kept
        self._blocks = blocks

    def consolidated(self) -> list[ConsolidatedFact]:
        """De-duplicated facts, newest first (last date, then how often seen); undated last."""
        merged = [g.freeze() for g in self._groups.values()]
        merged.sort(key=lambda f: (f.last_date is not None, f.last_date or date.min, f.count))
        merged.reverse()
        return merged


def consolidate(facts: Iterable[Fact], *, limit: int | None = None) -> list[ConsolidatedFact]:
    """`FactBook.consolidated()` of `facts` fed oldest first (so the newest wording wins)."""
    book = FactBook(limit=limit)
    book.add_all(sorted(facts, key=lambda f: (f.date is not None, f.date or date.min)))
    return book.consolidated()


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
        if _compatible(words, frozenset(candidate.key.split())):
            return candidate
    return None
