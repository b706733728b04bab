"""ChatGPT export conversation (a `mapping` tree of nodes) → `Conversation`.

The visible branch is the chain from `current_node` up through `parent`, reversed: `children`
cannot be trusted (real exports leave it empty or omit it). Without a usable `current_node` the
newest leaf stands in. Hidden, system and tool nodes are dropped, except the three places where the
user speaks about themselves (custom instructions, the saved-memory snapshot, `bio` memory writes),
which become `UserSignal`s beside the dialogue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.domain import Conversation, Message, Role, SignalKind, UserSignal
from app.processors.reading.text import SkipConversation, parse_time, visible_text

__all__ = ["normalise_chatgpt"]

# Content types whose text a person wrote or read in the conversation.
_TEXT_TYPES = frozenset({"text", "multimodal_text", "code"})
# Parts of a multimodal message that carry words (images, audio and file pointers do not).
_TEXT_PART_TYPES = frozenset({"text", "audio_transcription"})
_TITLE_CHARS = 300
_DIALOGUE_ROLES: frozenset[str] = frozenset({"user", "assistant"})


def normalise_chatgpt(
    raw: Mapping[str, Any], *, fallback_id: str, max_message_chars: int
) -> Conversation:
    """One ChatGPT conversation dict → `Conversation`; raises `SkipConversation` when unreadable."""
    mapping = raw.get("mapping")
    if not isinstance(mapping, Mapping) or not mapping:
        raise SkipConversation("no mapping")
    conv_id = _conversation_id(raw, mapping, fallback_id)
    path = _visible_branch(mapping, raw.get("current_node"))
    messages: list[Message] = []
    signals: list[UserSignal] = []
    for node in path:
        message = node.get("message")
        if type(message) is dict or isinstance(message, Mapping):
            _read_message(
                message,
                conv_id=conv_id,
                limit=max_message_chars,
                messages=messages,
                signals=signals,
            )
    if not messages and not signals:
        raise SkipConversation("no visible messages")
    title = raw.get("title")
    return Conversation(
        id=conv_id,
        title=(visible_text(title, _TITLE_CHARS) or None) if isinstance(title, str) else None,
        created_at=parse_time(raw.get("create_time")),
        messages=tuple(messages),
        signals=tuple(signals),
    )


def _conversation_id(raw: Mapping[str, Any], mapping: Mapping[str, Any], fallback: str) -> str:
    for key in ("conversation_id", "id"):
        value = raw.get(key)
        if isinstance(value, str) and value:
            return value
    if fallback:
        return fallback
    # Stable across re-exports: derived from the node ids, not from the position in the file.
    digest = hashlib.sha256("\n".join(sorted(map(str, mapping))).encode()).hexdigest()
    return f"chatgpt-{digest[:24]}"


def _visible_branch(mapping: Mapping[str, Any], current: Any) -> list[Mapping[str, Any]]:
    """Nodes from the root to the visible leaf. A repeat in the chain means the tree is corrupt
    (the order cannot be known): the conversation is skipped. A missing parent ends the chain
    there: cut-down exports have them and the part we can read is still the user's words."""
    start = current if isinstance(current, str) and current in mapping else _newest_leaf(mapping)
    chain: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    node_id: Any = start
    while isinstance(node_id, str) and node_id in mapping:
        if node_id in seen:
            raise SkipConversation("cyclic parent chain")
        seen.add(node_id)
        node = mapping[node_id]
        if not (type(node) is dict or isinstance(node, Mapping)):
            break
        chain.append(node)
        node_id = node.get("parent")
    chain.reverse()
    return chain


def _newest_leaf(mapping: Mapping[str, Any]) -> str | None:
    """The leaf with the latest message time; on a tie, the one listed last (deterministic)."""
    parents = {n.get("parent") for n in mapping.values() if isinstance(n, Mapping)}
    best: tuple[float, int] | None = None
    best_id: str | None = None
    for position, (node_id, node) in enumerate(mapping.items()):
        if node_id in parents or not isinstance(node, Mapping):
            continue
        message = node.get("message")
        created = parse_time(message.get("create_time")) if isinstance(message, Mapping) else None
        key = (created.timestamp() if created else float("-inf"), position)
        if best is None or key > best:
            best, best_id = key, str(node_id)
    return best_id


def _read_message(
    message: Mapping[str, Any],
    *,
    conv_id: str,
    limit: int,
    messages: list[Message],
    signals: list[UserSignal],
) -> None:
    # Runs for every node of every conversation: checks are ordered as before (so odd values
    # fail the same way), `type(x) is dict` short-cuts the slow `Mapping` ABC check for what
    # ijson builds, and times are parsed only for the messages that are kept.
    author = message.get("author")
    role = author.get("role") if type(author) is dict or isinstance(author, Mapping) else None
    content = message.get("content")
    if not (type(content) is dict or isinstance(content, Mapping)):
        return
    content_type = content.get("content_type") or "text"
    if content_type in ("user_editable_context", "model_editable_context"):
        created = parse_time(message.get("create_time"))
        signal = _context_signal(content, conv_id=conv_id, created=created, limit=limit)
        if signal is not None:
            signals.append(signal)
        return
    recipient = message.get("recipient")
    if role == "assistant" and recipient == "bio":
        text = visible_text(_content_text(content), limit)
        if text:
            signals.append(UserSignal("bio", text, conv_id, parse_time(message.get("create_time"))))
        return
    metadata = message.get("metadata")
    hidden = (type(metadata) is dict or isinstance(metadata, Mapping)) and metadata.get(
        "is_visually_hidden_from_conversation"
    )
    if role not in _DIALOGUE_ROLES or hidden or content_type not in _TEXT_TYPES:
        return
    if recipient not in (None, "all"):
        return  # a tool call (browser, python, ...): plumbing, not dialogue
    text = visible_text(_content_text(content), limit)
    if text:
        dialogue_role: Role = "user" if role == "user" else "assistant"
        messages.append(Message(dialogue_role, text, parse_time(message.get("create_time"))))


def _content_text(content: Mapping[str, Any]) -> str:
    parts = content.get("parts")
    if type(parts) is list and len(parts) == 1 and type(parts[0]) is str:
        return parts[0]  # the common case, as the general path below would give it
    pieces: list[str] = []
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, Mapping) and part.get("content_type") in _TEXT_PART_TYPES:
                text = part.get("text")
                if isinstance(text, str):
                    pieces.append(text)
    elif isinstance(content.get("text"), str):
        pieces.append(content["text"])
    return "\n".join(p for p in pieces if p)


def _context_signal(
    content: Mapping[str, Any], *, conv_id: str, created: datetime | None, limit: int
) -> UserSignal | None:
    if content.get("content_type") == "user_editable_context":
        labelled = [
            ("About me", content.get("user_profile")),
            ("How I want answers", content.get("user_instructions")),
        ]
        text = "\n".join(
            f"{label}: {_unwrap(v)}" for label, v in labelled if isinstance(v, str) and _unwrap(v)
        )
        kind: SignalKind = "custom_instructions"
    else:
        value = content.get("model_set_context")
        text = visible_text(value, limit) if isinstance(value, str) else ""
        kind = "memory_snapshot"
    if not text:
        return None
    return UserSignal(kind, text[:limit], conv_id, created)


def _unwrap(value: str) -> str:
    """Custom instructions arrive wrapped in ChatGPT's own preamble, with the user's words fenced
    in ``` … ```: keep only the fenced part when there is one."""
    start = value.find("```")
    end = value.rfind("```")
    inner = value[start + 3 : end] if 0 <= start < end else value
    return visible_text(inner, 4_000)
