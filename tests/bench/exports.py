"""Tiny hand-made ChatGPT exports for the bench's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["chatgpt_conversation", "write_json"]


def chatgpt_conversation(
    cid: str, turns: list[tuple[str, Any]], *, title: str | None = "t"
) -> dict[str, Any]:
    """A linear conversation: a root, then one node per (role, content) — a string is a text
    message, a dict is used as the whole `content`; `current_node` is the last."""
    mapping: dict[str, Any] = {"root": {"id": "root", "message": None, "parent": None}}
    mapping["root"]["children"] = []
    parent = "root"
    for i, (role, content) in enumerate(turns):
        node = f"{cid}-{i}"
        text = {"content_type": "text", "parts": [content]}
        body = content if isinstance(content, dict) else text
        mapping[node] = {
            "id": node,
            "message": {
                "id": node,
                "author": {"role": role},
                "create_time": 1_700_000_000 + i,
                "content": body,
                "metadata": {},
            },
            "parent": parent,
            "children": [],
        }
        mapping[parent]["children"].append(node)
        parent = node
    return {
        "id": cid,
        "title": title,
        "create_time": 1_700_000_000,
        "mapping": mapping,
        "current_node": parent,
    }


def write_json(path: Path, conversations: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(conversations))
    return path
