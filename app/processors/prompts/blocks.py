"""How every prompt delimits its inputs: tagged blocks whose bodies cannot close them early.

Every input block is delimited by a tag defined once in `Tag`; text placed inside a block has our
own tag names neutralised (a zero-width space after `<`) so a conversation cannot close the block
early or forge a signal. `blocks` / `one` recover what `block` wrote: the Messages-API simulator
uses them (through each task's `parse_*`) to answer through the offline provider.
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = ["Tag", "attr", "block", "blocks", "neutralise", "one", "restore"]


class Tag(StrEnum):
    EXCERPT = "excerpt"
    EXCERPT_LIST = "excerpt_list"
    SIGNALS = "user_signals"
    SIGNAL = "signal"
    CATEGORY = "category"
    TARGET = "target_count"
    FACTS = "facts"
    CONVERSATIONS = "conversations"
    MEMORY = "memory"
    CORRECTION = "correction"


_ZWSP = "\u200b"
_OWN_TAG = re.compile(r"<(/?)(" + "|".join(t.value for t in Tag) + r")\b")
_NEUTRAL_TAG = re.compile("<" + _ZWSP + r"(/?)(" + "|".join(t.value for t in Tag) + r")\b")


def neutralise(text: str) -> str:
    return _OWN_TAG.sub(lambda m: f"<{_ZWSP}{m.group(1)}{m.group(2)}", text)


def restore(text: str) -> str:
    return _NEUTRAL_TAG.sub(lambda m: f"<{m.group(1)}{m.group(2)}", text)


def attr(value: str) -> str:
    return neutralise(value.replace('"', "'").replace("\n", " ").strip())


def block(tag: Tag, body: str, **attrs: str) -> str:
    head = "".join(f' {k}="{attr(v)}"' for k, v in attrs.items())
    return f"<{tag}{head}>\n{neutralise(body)}\n</{tag}>"


def blocks(text: str, tag: Tag) -> list[tuple[dict[str, str], str]]:
    """Every `<tag ...>body</tag>` in `text`, attributes and restored body, in order."""
    pattern = re.compile(rf"<{tag}((?:\s+\w+=\"[^\"]*\")*)>\n(.*?)\n</{tag}>", re.DOTALL)
    found = []
    for match in pattern.finditer(text):
        attrs = {k: restore(v) for k, v in re.findall(r'(\w+)="([^"]*)"', match.group(1))}
        found.append((attrs, restore(match.group(2))))
    return found


def one(text: str, tag: Tag) -> tuple[dict[str, str], str] | None:
    found = blocks(text, tag)
    return found[0] if found else None
