"""Claude.ai export conversation (`chat_messages`) → `Conversation`.

`sender` is human/assistant. The words are the `text` blocks of `content[]`; the message-level
`text` is used only when there is no `content` list (older exports), since it can carry thinking.
When messages carry `parent_message_uuid`, the visible branch is followed from
`current_leaf_message_uuid` (or the newest leaf), as for ChatGPT; otherwise the list order stands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.domain import Conversation, Message, Role
from app.processors.reading.text import SkipConversation, parse_time, visible_text

__all__ = ["normalise_claude"]

_ROLES: dict[str, Role] = {"human": "user", "user": "user", "assistant": "assistant"}


def normalise_claude(
    raw: Mapping[str, Any], *, fallback_id: str, max_message_chars: int
) -> Conversation:
    """One Claude.ai conversation dict → `Conversation`; `SkipConversation` when unreadable."""
    chat = raw.get("chat_messages")
    if not isinstance(chat, list):
        raise SkipConversation("no chat_messages")
    items = [m for m in chat if isinstance(m, Mapping)]
    messages: list[Message] = []
    for item in _visible_branch(items, raw.get("current_leaf_message_uuid")):
        role = _ROLES.get(str(item.get("sender")))
        if role is None:
            continue
        text = visible_text(_message_text(item), max_message_chars)
        if text:
            messages.append(Message(role, text, parse_time(item.get("created_at"))))
    if not messages:
        raise SkipConversation("no visible messages")
    conv_id = raw.get("uuid")
    name = raw.get("name")
    return Conversation(
        id=conv_id if isinstance(conv_id, str) and conv_id else fallback_id,
        title=(visible_text(name, 300) or None) if isinstance(name, str) else None,
        created_at=parse_time(raw.get("created_at")),
        messages=tuple(messages),
    )


def _visible_branch(items: Sequence[Mapping[str, Any]], leaf: Any) -> list[Mapping[str, Any]]:
    by_id = {str(m["uuid"]): m for m in items if isinstance(m.get("uuid"), str)}
    if not any(isinstance(m.get("parent_message_uuid"), str) for m in items):
        return list(items)
    if not (isinstance(leaf, str) and leaf in by_id):
        parents = {m.get("parent_message_uuid") for m in items}
        leaves = [m for m in items if m.get("uuid") not in parents]
        if not leaves:
            raise SkipConversation("cyclic parent chain")
        # Newest by its time; on a tie the one listed last. ISO strings sort as times do.
        newest = max(enumerate(leaves), key=lambda p: (str(p[1].get("created_at") or ""), p[0]))
        leaf = newest[1].get("uuid")
    chain: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    node_id: Any = leaf
    while isinstance(node_id, str) and node_id in by_id:
        if node_id in seen:
            raise SkipConversation("cyclic parent chain")
        seen.add(node_id)
        chain.append(by_id[node_id])
        node_id = by_id[node_id].get("parent_message_uuid")
    chain.reverse()
    return chain


def _message_text(item: Mapping[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, list):
        blocks = [
            b["text"]
            for b in content
            if isinstance(b, Mapping) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        return "\n".join(blocks)
    text = item.get("text")
    return text if isinstance(text, str) else ""
