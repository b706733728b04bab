"""What text goes to the model for fact extraction, and how the cache keys it.

The user's own words always; of the assistant only the tail of the turn a short user reply
answers, and only when it asks something (docs/EXTRACTION.md has the reasons and the numbers).
Long pasted code is folded. User signals go in batches of at most ~20k characters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from app.domain import Chunk, UserSignal
from app.processors.prompts import PROMPT_VERSION

__all__ = [
    "DEFAULT_ASSISTANT_CONTEXT_CHARS",
    "EXTRACTOR_VERSION",
    "build_extraction_text",
    "signal_batches",
    "signal_key",
]

# "t2" versions the text layout below (t1 gave context before every user turn, asked or not).
# Bump it when build_extraction_text changes what it emits; PROMPT_VERSION follows it, so
# either change invalidates the cache.
EXTRACTOR_VERSION = f"t2-{PROMPT_VERSION}"
DEFAULT_ASSISTANT_CONTEXT_CHARS = 200
# A user turn at least this long stands on its own: no assistant context before it.
SELF_CONTAINED_USER_CHARS = 400
SIGNAL_BATCH_CHARS = 20_000
_CODE_FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", re.DOTALL)
_KEEP_CODE_CHARS = 400


def _tail(text: str, limit: int) -> str:
    """The end of an assistant turn, cut at a word boundary: usually the question being answered."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[len(text) - limit :]
    space = cut.find(" ")
    return "…" + (cut[space + 1 :] if 0 <= space < 40 else cut)


def _fold_code(text: str) -> str:
    """Long pasted code says little about the person: keep its first lines, note the rest."""

    def fold(match: re.Match[str]) -> str:
        lang, body = match.group(1).strip(), match.group(2)
        if len(body) <= _KEEP_CODE_CHARS:
            return match.group(0)
        head = body[:_KEEP_CODE_CHARS].rsplit("\n", 1)[0]
        return f"```{lang}\n{head}\n[… {body.count(chr(10)) + 1} lines of code in all]\n```"

    return _CODE_FENCE.sub(fold, text)


def build_extraction_text(
    chunk: Chunk, *, assistant_context_chars: int = DEFAULT_ASSISTANT_CONTEXT_CHARS
) -> str:
    """The text the model reads for this chunk; "" when the chunk has no words of the user's.

    Every user turn, in order, in full (long code blocks folded). Before a short user turn
    (under SELF_CONTAINED_USER_CHARS), the last `assistant_context_chars` of the assistant turn
    it answers, marked as context, when that tail asks the user something: "Berlin." means
    nothing without "Which city are you in?", while a short new request needs no context.
    A chunk without structured messages is sent as it is.
    """
    if not chunk.messages:
        return chunk.content.strip()
    lines: list[str] = []
    previous_assistant = ""
    for message in chunk.messages:
        text = message.text.strip()
        if message.role == "assistant":
            previous_assistant = text
            continue
        if not text:
            continue
        short = len(text) < SELF_CONTAINED_USER_CHARS
        if previous_assistant and assistant_context_chars > 0 and short:
            context = _tail(previous_assistant, assistant_context_chars)
            if "?" in context:
                lines.append(f"Assistant (context): {context}")
        lines.append(f"User: {_fold_code(text)}")
        previous_assistant = ""
    return "\n\n".join(lines)


def signal_key(signals: Sequence[UserSignal]) -> str:
    digest = hashlib.sha256()
    for signal in signals:
        digest.update(f"{signal.kind}\x00{signal.text}\x01".encode())
    return "signals:" + digest.hexdigest()


def signal_batches(signals: Sequence[UserSignal]) -> list[tuple[UserSignal, ...]]:
    """The signals in order, grouped so no call carries more than ~20k characters of them."""
    batches: list[tuple[UserSignal, ...]] = []
    current: list[UserSignal] = []
    size = 0
    for signal in signals:
        if not signal.text.strip():
            continue
        if current and size + len(signal.text) > SIGNAL_BATCH_CHARS:
            batches.append(tuple(current))
            current, size = [], 0
        current.append(signal)
        size += len(signal.text)
    if current:
        batches.append(tuple(current))
    return batches
