"""Text helpers shared by the export normalisers and the chunker.

All of them are pure and deterministic: the same input always gives the same output, which the
fact cache relies on (a re-export of an unchanged conversation must hash the same).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "SkipConversation",
    "clean_text",
    "estimate_tokens",
    "parse_time",
    "truncate_middle",
    "visible_text",
]

# Citation markers, in one pass: ChatGPT's newer inline citations wrapped in private-use
# characters ("\ue200cite\ue202turn0search3\ue201"), any stray private-use character, and the
# older bracketed form ("【4:0†source】", "【12†L3-L9】"). It is the alternation
#   \ue200[^\ue200\ue201]{0,200}\ue201 | [\ue000-\uf8ff] | 【[^【】\n]{0,80}†[^【】\n]{0,80}】
# (tried in that order), written to start with the class of characters a match can start with:
# the regex engine then scans for those quickly instead of trying the alternation at every
# position (~4x faster on long pastes, same matches).
_CITATIONS = re.compile(
    "[\ue000-\uf8ff【](?:"
    "(?<=\ue200)[^\ue200\ue201]{0,200}\ue201"
    "|(?<=【)[^【】\n]{0,80}†[^【】\n]{0,80}】"
    "|(?<=[\ue000-\uf8ff]))"
)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MANY_NEWLINES = re.compile("\n{3,}")

# What replaces the middle of an over-long message. `{n}` is the number of characters left out.
_OMISSION = "\n[… {n} characters omitted …]\n"


class SkipConversation(Exception):
    """Raised by a normaliser when a conversation has nothing readable; `reason` is a short label
    (counted in the ingest stats and named in the error when no conversation at all is readable)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clean_text(text: str) -> str:
    """Strip citation markers and control characters, tidy whitespace; keep the words.

    Each pass is guarded by a cheap membership test: most messages need none of them, and this
    runs on every message of exports of a gigabyte.
    """
    printable = text.isprintable()  # newlines and tabs count as unprintable: a cheap pre-check
    if not text.isascii():
        if printable:
            # Private-use characters are unprintable, so only the bracketed form can be here, and
            # taking it out leaves the text printable: nothing else to do.
            return (_CITATIONS.sub("", text) if "【" in text else text).strip()
        text = _CITATIONS.sub("", text)
        printable = text.isprintable()
    if not printable:
        text = _CONTROL.sub("", text)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if " \n" in text or "\t\n" in text:
            # = re.sub("[ \t]+\n", "\n", text): the trailing blanks of every line but the
            # last; the regex tries every space of the text and is ~10x slower.
            lines = text.split("\n")
            text = "\n".join([line.rstrip(" \t") for line in lines[:-1]] + lines[-1:])
        if "\n\n\n" in text:
            text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def visible_text(raw: str, limit: int) -> str:
    """`clean_text` then `truncate_middle`, cutting a huge paste down before cleaning it (regexes
    over 50 MB take seconds; over 2 × limit they take microseconds)."""
    return truncate_middle(clean_text(truncate_middle(raw, 2 * limit)), limit)


def truncate_middle(text: str, limit: int) -> str:
    """Bound one message to `limit` characters, keeping its head (two thirds) and tail (one third).

    A pasted document or log is usually recognisable from its start and its end; the middle is
    what a person skimmed. Idempotent: the result is never longer than `limit`, so applying it
    twice changes nothing.
    """
    if len(text) <= limit:
        return text
    marker_room = len(_OMISSION.format(n=len(text)))
    keep = max(limit - marker_room, 0)
    head = keep * 2 // 3
    tail = keep - head
    omitted = len(text) - head - tail
    tail_text = text[len(text) - tail :] if tail else ""
    return text[:head] + _OMISSION.format(n=omitted) + tail_text


def estimate_tokens(text: str) -> int:
    """A cheap, deterministic token estimate: UTF-8 bytes / 4, rounded up.

    English prose runs at about 4 bytes per token; scripts with multi-byte characters (Cyrillic,
    CJK) cost more tokens per character and also more bytes, so the estimate follows them better
    than a character count would. See docs/INGESTION.md for how it compares with real counts.
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (size + 3) // 4


def parse_time(value: Any) -> datetime | None:
    """Epoch seconds (int, float or numeric string) or ISO-8601 text → aware UTC datetime.

    Anything else (None, garbage, out of range) is None: missing times are normal in exports.
    """
    if type(value) is float:  # the common case (ChatGPT's epoch floats): the general path, shorter
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (ValueError, OverflowError, OSError):
            return None
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), tz=UTC)
        if isinstance(value, str) and value.strip():
            raw = value.strip()
            try:
                return datetime.fromtimestamp(float(raw), tz=UTC)
            except ValueError:
                parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None
