"""Stream conversations out of an export file: `.json`, `.json.gz` or `.zip`, ChatGPT or Claude.ai.

Public entry points:

- `ExportReader(path, settings=...)`: iterate it for `Conversation`s; `.format` is the detected
  source ("chatgpt" | "claude", found by peeking at the first conversation), `.container` the
  file kind ("json" | "gzip" | "zip"), `.skipped` the unreadable conversations by reason.
- `iter_conversations(path, settings=...)`: the same iteration as a plain generator, for callers
  that do not need the format.

Memory stays flat: the file is read in 1 MiB blocks by ijson's C backend and only one
conversation is held at a time. Every problem with the input is a `BadExport` whose message says
what was wrong and what to do; nothing here hangs or crashes on hostile input (zip bombs,
truncation, invalid UTF-8, a single enormous conversation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import ijson
import structlog

from app.config import Settings
from app.domain import Conversation
from app.errors import BadExport
from app.processors.reading.chatgpt import normalise_chatgpt
from app.processors.reading.claude import normalise_claude
from app.processors.reading.export_source import (
    Container,
    GuardedReader,
    detect_container,
    open_members,
)
from app.processors.reading.text import SkipConversation

__all__ = ["ExportFormat", "ExportReader", "iter_conversations"]

ExportFormat = Literal["chatgpt", "claude"]

_log = structlog.get_logger(__name__)
# yajl re-copies a string token for every block it spans, so a huge pasted string costs
# O(size² / block): 1 MiB blocks parse a 50 MB string in under a second (64 KiB: ~9 s).
_BUF_SIZE = 1024 * 1024
# Items read before we give up finding a conversation we recognise.
_DETECT_WINDOW = 20
_MAX_KEYS_SHOWN = 8


class ExportReader:
    """One export file, read lazily. Iterating twice reads the file twice."""

    def __init__(self, path: Path, *, settings: Settings) -> None:
        self.path = Path(path)
        self._settings = settings
        self.container: Container = detect_container(self.path, settings=settings)
        self._format: ExportFormat | None = None
        self.skipped: dict[str, int] = {}
        self.conversations = 0
        self._first_keys: list[str] = []

    @property
    def format(self) -> ExportFormat:
        """The export's source, detected from its first recognisable conversation (cheap: stops
        reading as soon as it is found). Raises `BadExport` when there is none."""
        if self._format is None:
            for _ in self._raw_items():
                if self._format is not None:
                    break
        if self._format is None:
            raise BadExport(
                "The export holds no conversations we recognise. Upload the conversations.json "
                "(or the whole zip) from a ChatGPT or Claude.ai data export."
            )
        return self._format

    def __iter__(self) -> Iterator[Conversation]:
        self.skipped = {}
        self.conversations = 0
        seen_signals: set[bytes] = set()
        items = 0
        for fallback_id, raw in self._raw_items():
            items += 1
            try:
                conversation = self._normalise(raw, fallback_id)
            except SkipConversation as skip:
                self.skipped[skip.reason] = self.skipped.get(skip.reason, 0) + 1
                continue
            if conversation is None:
                continue
            if conversation.signals:
                conversation = _drop_repeated_signals(conversation, seen_signals)
            self.conversations += 1
            yield conversation
        if self.conversations == 0:
            raise BadExport(self._nothing_readable(items))
        _log.info(
            "export.read",
            container=self.container,
            format=self._format,
            conversations=self.conversations,
            skipped=sum(self.skipped.values()),
            skipped_reasons=dict(self.skipped),
        )

    # --- internals --------------------------------------------------------------------------

    def _normalise(self, raw: Any, fallback_id: str) -> Conversation | None:
        limit = self._settings.max_message_chars
        if not isinstance(raw, Mapping):
            raise SkipConversation("not a conversation object")
        if self._format is None:
            raise SkipConversation(_unrecognised_reason(raw))
        if self._format == "chatgpt":
            return normalise_chatgpt(raw, fallback_id=fallback_id, max_message_chars=limit)
        return normalise_claude(raw, fallback_id=fallback_id, max_message_chars=limit)

    def _raw_items(self) -> Iterator[tuple[str, Any]]:
        """(fallback id, raw conversation) for every item of every member, in order."""
        undetected = 0
        for name, reader in open_members(
            self.path, container=self.container, settings=self._settings
        ):
            for index, (key, raw) in enumerate(_items_of(reader, name=name)):
                reader.mark_item()
                if self._format is None:
                    detected = isinstance(raw, Mapping) and _detect_format(raw)
                    if detected:
                        self._format = detected
                    else:
                        undetected += 1
                        if undetected == 1:
                            self._first_keys = _describe(raw)
                        if undetected >= _DETECT_WINDOW:
                            raise BadExport(_wrong_format(self._first_keys))
                yield key or (f"{name}#{index}" if self._format == "claude" else ""), raw

    def _nothing_readable(self, items: int) -> str:
        if items == 0:
            return (
                "The export contains no conversations (an empty list). Check that you uploaded the "
                "right file: ChatGPT's conversations.json or the export zip."
            )
        if self._format is None:
            return _wrong_format(self._first_keys)
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return (
            f"None of the export's {items} conversations could be read ({reasons}). "
            "The file may be damaged or cut down: export your data again and upload the new file."
        )


def iter_conversations(path: Path, *, settings: Settings) -> Iterator[Conversation]:
    """Every readable conversation of the export at `path`, one at a time (see `ExportReader`)."""
    yield from ExportReader(path, settings=settings)


def _items_of(reader: GuardedReader, *, name: str) -> Iterator[tuple[str, Any]]:
    """The conversations of one JSON document: a top-level array, `{"conversations": [...]}`, or
    an object whose values are conversations (keyed by name)."""
    first = reader.first_char()
    try:
        if first == b"[":
            for item in ijson.items(reader, "item", use_float=True, buf_size=_BUF_SIZE):
                yield "", item
            return
        shape = _object_shape(reader.reopen(), name=name)
        if shape == "wrapped":
            for item in ijson.items(
                reader, "conversations.item", use_float=True, buf_size=_BUF_SIZE
            ):
                yield "", item
        else:
            for key, item in ijson.kvitems(reader, "", use_float=True, buf_size=_BUF_SIZE):
                yield str(key), item
    except ijson.JSONError as exc:
        raise BadExport(_json_error(str(exc), name=name, offset=reader.bytes_read)) from None


def _object_shape(reader: GuardedReader, *, name: str) -> Literal["wrapped", "named"]:
    top_key: str | None = None
    try:
        for prefix, event, value in ijson.parse(reader, use_float=True, buf_size=_BUF_SIZE):
            if prefix == "" and event == "map_key":
                top_key = value
            elif prefix == "conversations" and event == "start_array":
                return "wrapped"
            elif event == "map_key" and prefix == top_key and value in ("mapping", "chat_messages"):
                return "named"
            elif prefix == "" and event == "end_map":
                break
    except ijson.JSONError as exc:
        raise BadExport(_json_error(str(exc), name=name, offset=reader.bytes_read)) from None
    finally:
        reader.close()
    raise BadExport(
        f"{name} is a JSON object without a conversations list: expected a list of "
        'conversations, or {"conversations": [...]}. Upload the conversations.json from your '
        "ChatGPT or Claude.ai data export."
    )


def _detect_format(raw: Mapping[str, Any]) -> ExportFormat | None:
    if "mapping" in raw:
        return "chatgpt"
    if "chat_messages" in raw:
        return "claude"
    return None


def _unrecognised_reason(raw: Mapping[str, Any]) -> str:
    chatgpt_like = any(k in raw for k in ("current_node", "conversation_id", "create_time"))
    return "no mapping" if chatgpt_like else "not a conversation object"


def _describe(raw: Any) -> list[str]:
    if isinstance(raw, Mapping):
        return [str(k)[:30] for k in list(raw)[:_MAX_KEYS_SHOWN]]
    return [f"<{type(raw).__name__}>"]


def _wrong_format(keys: list[str]) -> str:
    found = ", ".join(keys) if keys else "nothing"
    if keys and any(k in keys for k in ("current_node", "conversation_id", "create_time")):
        return (
            "The export's conversations have no `mapping` (the message tree), so no messages can "
            f"be read (first conversation has: {found}). Export your ChatGPT data again."
        )
    return (
        "This is not a ChatGPT or Claude.ai export: its items have neither `mapping` (ChatGPT) "
        f"nor `chat_messages` (Claude.ai); the first one has: {found}. Upload the "
        "conversations.json (or the whole zip) from your data export."
    )


def _json_error(detail: str, *, name: str, offset: int) -> str:
    if "premature EOF" in detail:
        return (
            f"{name} ends in the middle of the JSON (cut off after {offset:,} bytes): the upload "
            "was probably interrupted. Upload the complete file again."
        )
    if "UTF8" in detail or "UTF-8" in detail:
        return (
            f"{name} contains bytes that are not valid UTF-8 (near byte {offset:,}): it may have "
            "been re-saved in another encoding. Upload the original file from the export."
        )
    return (
        f"{name} is not valid JSON (error near byte {offset:,}). Upload the original "
        "conversations.json or zip from your data export, unmodified."
    )


def _drop_repeated_signals(conversation: Conversation, seen: set[bytes]) -> Conversation:
    """Custom instructions repeat in every conversation of an export: keep the first of each."""
    kept = []
    for signal in conversation.signals:
        digest = hashlib.sha1(
            f"{signal.kind}\0{signal.text}".encode(), usedforsecurity=False
        ).digest()
        if digest not in seen:
            seen.add(digest)
            kept.append(signal)
    if len(kept) == len(conversation.signals):
        return conversation
    return Conversation(
        id=conversation.id,
        title=conversation.title,
        created_at=conversation.created_at,
        messages=conversation.messages,
        signals=tuple(kept),
    )
