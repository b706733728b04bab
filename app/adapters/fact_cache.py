"""The fact cache's entries, as both stores read them: decoding an entry's facts, and what makes an
entry unusable.

An entry whose facts do not decode — JSON that does not parse, not a list, a fact with an unknown
category, no text or a bad date — is a cache miss, never an error: the chunk is extracted again
and `put_cached_facts` replaces the entry (one corrupt row used to fail every re-run). Such an
entry is logged by the kind of problem and a prefix of its content hash, never by its content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import structlog

from app.domain import Fact, FactCategory, fact_from_json
from app.ports import FactCacheEntry, FactCacheKey

__all__ = [
    "HASHES_PER_DELETE",
    "PAGE_SIZE",
    "InvalidCacheEntry",
    "decode_cached_facts",
    "entry_of",
    "usable_facts",
]

_log = structlog.get_logger(__name__)

# Entries per scan page: one bounded read, under PostgREST's silent 1,000-row cap.
PAGE_SIZE = 500
# Keys per delete request: an `in.(...)` list of 64-hex hashes stays near 7 KB of URL.
HASHES_PER_DELETE = 100
_CATEGORIES = frozenset(category.value for category in FactCategory)
_HASH_PREFIX = 12


class InvalidCacheEntry(ValueError):
    """`kind` names the problem (`not_json`, `not_a_list`, `not_an_object`, `unknown_category`,
    `missing_text`, `bad_date`, `bad_conversation_id`) without quoting the content."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _check(item: Any) -> None:
    if not isinstance(item, dict):
        raise InvalidCacheEntry("not_an_object")
    if item.get("category") not in _CATEGORIES:
        raise InvalidCacheEntry("unknown_category")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidCacheEntry("missing_text")
    raw_date = item.get("date")
    if raw_date:
        try:
            date.fromisoformat(raw_date)
        except (TypeError, ValueError):
            raise InvalidCacheEntry("bad_date") from None
    if not isinstance(item.get("conversation_id"), str | None):
        raise InvalidCacheEntry("bad_conversation_id")


def decode_cached_facts(raw: Any) -> list[Fact]:
    """The `facts` column (JSON text in SQLite, decoded JSON from PostgREST) → facts, or
    `InvalidCacheEntry` saying what is wrong with it."""
    value = raw
    if isinstance(raw, str | bytes):
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidCacheEntry("not_json") from None
    if not isinstance(value, list):
        raise InvalidCacheEntry("not_a_list")
    for item in value:
        _check(item)
    return [fact_from_json(item) for item in value]


def usable_facts(
    rows: Iterable[Mapping[str, Any]], *, user_id: str, extractor_version: str
) -> dict[str, list[Fact]]:
    """Read rows (`content_hash`, `facts`) → content hash → facts, leaving out (and logging)
    each entry whose facts do not decode: a miss, extracted again."""
    found: dict[str, list[Fact]] = {}
    for row in rows:
        content_hash = row["content_hash"]
        try:
            found[content_hash] = decode_cached_facts(row["facts"])
        except InvalidCacheEntry as exc:
            _log.warning(
                "fact_cache.invalid_entry",
                user_id=user_id,
                content_hash=content_hash[:_HASH_PREFIX],
                extractor_version=extractor_version,
                reason=exc.kind,
            )
    return found


def entry_of(row: dict[str, Any]) -> FactCacheEntry:
    """A scanned row → its key and, when its facts do not decode, why."""
    key = FactCacheKey(
        user_id=str(row["user_id"]),
        content_hash=str(row["content_hash"]),
        extractor_version=str(row["extractor_version"]),
    )
    try:
        decode_cached_facts(row["facts"])
    except InvalidCacheEntry as exc:
        return FactCacheEntry(key=key, problem=exc.kind)
    return FactCacheEntry(key=key)
