"""The earlier service's extraction arithmetic, reproduced from its code (not copied from it).

Source: Pu11en/soulprint-rlm at 89e6689 — `processors/dag_parser.py` (which messages),
`processors/conversation_chunker.py` (text and chunks), `processors/fact_extractor.py` (one call a
chunk). It parsed the raw export itself, so this reads the raw ChatGPT JSON too (streamed with
ijson, one conversation at a time), not through our reader:

- **Active path**: from `current_node` back through `parent` to the root, then reversed; when
  `current_node` is missing or unknown, forward from the first node (in mapping order) whose
  parent is missing, following each node's *last* child (its docstring says first; its code
  takes `children[-1]`).
- **Visible messages**: `user` and `assistant` always (hidden custom-instruction nodes and
  `bio` / browser calls included); `tool` never; `system` only with
  `metadata.is_user_system_message` true (and then dropped when formatting, which keeps only
  user and assistant lines).
- **Content**: a string; else a dict's `text` (code cells); else the `parts` — strings and dict
  parts with a `text` — joined by newlines; stripped; empty messages dropped.
- **Text**: `# <title>` (a null title prints as "None"), a blank line, then `User: …` /
  `Assistant: …` lines, each message cut at 5,000 characters + "... [truncated]"; a
  conversation without messages is `# <title>` + "[No messages found]" and still one chunk.
- **Chunks**: its own estimate len(text) // 4; a conversation within 2,000 is one chunk; a
  longer one is split after ". ", "? ", "! " and at newlines, sentences added while the running
  sum of their len // 4 stays ≤ 2,000, each new chunk starting with the previous chunk's last 800
  characters (200 tokens × 4; the whole previous chunk if shorter).
- **Calls**: one per chunk: its 1,373-character prompt, the chunk between `<conversation>` tags,
  a one-line instruction; `max_tokens` 2,048; no system prompt, no tool.

Calls and input tokens are then counted by *our* estimator, like ours, in `earlier_design_cost`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from app.ports import Excerpt, ExtractionRequest
from app.processors.reading.text import estimate_tokens
from bench.cost_model import EARLIER_REPLY, DesignCost, ReplyFormat, offline_facts

__all__ = [
    "EARLIER_MAX_TOKENS",
    "EARLIER_TARGET_TOKENS",
    "REQUEST_FIXED_CHARS",
    "active_messages",
    "earlier_chunks",
    "earlier_design_cost",
    "format_conversation",
    "iter_raw_conversations",
    "request_tokens",
    "split_text",
]

EARLIER_TARGET_TOKENS = 2_000
EARLIER_OVERLAP_CHARS = 200 * 4
EARLIER_MAX_TOKENS = 2_048
MESSAGE_CUT_CHARS = 5_000
_CUT_MARK = "... [truncated]"
_BOUNDARIES = (". ", "? ", "! ", "\n")
# Around each chunk, every call sent the same ASCII text: its FACT_EXTRACTION_PROMPT (1,373
# characters), "\n<conversation>\n" (16) before the chunk, and after it "\n</conversation>\n\n"
# with a one-line instruction to output only the JSON (96). Only their size matters here.
REQUEST_FIXED_CHARS = 1_373 + 16 + 96


def iter_raw_conversations(path: Path) -> Iterator[dict[str, Any]]:
    """The export's conversations as raw dicts (a JSON array, as its downloader expected)."""
    with path.open("rb") as handle:
        yield from ijson.items(handle, "item", use_float=True, buf_size=1 << 20)


def _path_nodes(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    mapping = conversation.get("mapping") or {}
    if not isinstance(mapping, dict) or not mapping:
        return []
    node_id = conversation.get("current_node")
    seen: set[str] = set()  # a cyclic hostile export would loop forever in its code
    messages: list[dict[str, Any]] = []
    if node_id and node_id in mapping:
        while node_id and node_id in mapping and node_id not in seen:
            seen.add(node_id)
            node = mapping[node_id]
            if node.get("message"):
                messages.append(node["message"])
            node_id = node.get("parent")
        messages.reverse()
        return messages
    node_id = next(
        (k for k, n in mapping.items() if not n.get("parent") or n["parent"] not in mapping), None
    )
    while node_id and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = mapping[node_id]
        if node.get("message"):
            messages.append(node["message"])
        children = node.get("children") or []
        node_id = children[-1] if children else None
    return messages


def _visible(message: dict[str, Any]) -> bool:
    role = (message.get("author") or {}).get("role")
    if role == "system":
        return (message.get("metadata") or {}).get("is_user_system_message", False) is True
    return role in ("user", "assistant")


def _content(content: Any) -> str:
    if not content:
        return ""
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, dict):
        return ""
    if "text" in content:
        return str(content["text"]).strip()
    parts = [
        p if isinstance(p, str) else p["text"]
        for p in content.get("parts") or []
        if isinstance(p, str) or (isinstance(p, dict) and "text" in p)
    ]
    return "\n".join(str(p) for p in parts).strip()


def active_messages(conversation: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of the visible, non-empty messages on the active path, in order."""
    found = []
    for message in _path_nodes(conversation):
        if _visible(message):
            text = _content(message.get("content", {}))
            if text.strip():
                found.append(((message.get("author") or {}).get("role", "unknown"), text))
    return found


_PREFIX = {"user": "User: ", "assistant": "Assistant: "}


def _cut(text: str) -> str:
    return text[:MESSAGE_CUT_CHARS] + _CUT_MARK if len(text) > MESSAGE_CUT_CHARS else text


def format_conversation(conversation: dict[str, Any]) -> str:
    """The text the earlier design chunked for one conversation."""
    title = conversation.get("title", "Untitled")
    if "messages" in conversation:  # its "simplified" input: already a list of role / content
        pairs = [
            (m.get("role", "unknown"), m.get("content", ""))
            for m in conversation["messages"]
            if m.get("role") != "system"
        ]
    else:
        pairs = active_messages(conversation)
        if not pairs:
            return f"# {title}\n[No messages found]"
    lines = [f"# {title}\n"]
    lines += [_PREFIX[role] + _cut(text) for role, text in pairs if role in _PREFIX]
    return "\n".join(lines)


def _sentences(text: str) -> Iterator[str]:
    """Pieces ending just after each boundary; the next boundary of each kind is remembered, so
    this is linear where a fresh `find` of every kind per sentence is not."""
    nearest = {b: text.find(b) for b in _BOUNDARIES}
    pos = 0
    while pos < len(text):
        for b, at in nearest.items():
            if at != -1 and at < pos:
                nearest[b] = text.find(b, pos)
        found = [at for at in nearest.values() if at != -1]
        if not found:
            yield text[pos:]
            return
        end = min(found) + 1
        yield text[pos:end]
        pos = end


def split_text(text: str) -> list[str]:
    """One conversation's text cut into the earlier design's chunks."""
    if len(text) // 4 <= EARLIER_TARGET_TOKENS:
        return [text]
    chunks: list[str] = []
    current, tokens = "", 0
    for sentence in _sentences(text):
        size = len(sentence) // 4
        if current and tokens + size > EARLIER_TARGET_TOKENS:
            chunks.append(current)
            current = current[-EARLIER_OVERLAP_CHARS:] + sentence
            tokens = len(current) // 4
        else:
            current += sentence
            tokens += size
    if current:
        chunks.append(current)
    return chunks


def earlier_chunks(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(conversation, chunk text) for every chunk of the export, in order: one call each."""
    for conversation in iter_raw_conversations(path):
        for chunk in split_text(format_conversation(conversation)):
            yield conversation, chunk


def request_tokens(chunk: str) -> int:
    """Our estimate of one earlier request: its fixed ASCII text plus the chunk."""
    size = len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogatepass"))
    return (REQUEST_FIXED_CHARS + size + 3) // 4


def earlier_design_cost(path: Path, *, reply: ReplyFormat = EARLIER_REPLY) -> DesignCost:
    """The earlier design's extraction over the export at `path`: a call per chunk, input by our
    estimator, output by `bench.cost_model`'s model in `reply`'s format."""
    cost = DesignCost(name="earlier design", reply=reply, max_tokens=EARLIER_MAX_TOKENS)
    with offline_facts() as facts_of:
        for conversation, chunk in earlier_chunks(path):
            cost.chunks += 1
            request = ExtractionRequest.of(
                Excerpt(
                    chunk_id="",
                    conversation_id=str(conversation.get("id", "")),
                    title=None,
                    date=None,
                    text=chunk,
                )
            )
            cost.add_call(
                input_tokens=request_tokens(chunk),
                text_tokens=estimate_tokens(chunk),
                facts=facts_of(request),
            )
    return cost
