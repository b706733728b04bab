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
    "extractor_version",
    "signal_batches",
    "signal_key",
]

# "t3" versions the text layout below (t1 gave context before every user turn, asked or not; t2
# before any turn under 400 characters, and sent long turns whole). Bump it when
# build_extraction_text changes what it emits; PROMPT_VERSION follows it, so either change
# invalidates the cache.
EXTRACTOR_VERSION = f"t3-{PROMPT_VERSION}"


def extractor_version(provider: str, model: str) -> str:
    """The fact cache's version key for facts from this extractor: the text layout and prompt
    (EXTRACTOR_VERSION), and who answered — the offline rules and a model, or two models, do
    not give the same facts, and one must never be served as the other's."""
    return f"{EXTRACTOR_VERSION}/{provider}:{model}"


DEFAULT_ASSISTANT_CONTEXT_CHARS = 160
# A user turn at least this long stands on its own: no assistant context before it. An answer
# ("Berlin, since 2019.") is short; a turn of a sentence or more says what it means.
SELF_CONTAINED_USER_CHARS = 120
# A user turn longer than this is mostly pasted material (a document to edit, a log, an essay to
# summarise): the prompt says it is no evidence. Its head (the user's framing, and the start of
# what they pasted) and its tail (often the request) are kept, the middle is left out and noted.
LONG_TURN_CHARS = 2_500
_LONG_HEAD_CHARS = 1_200
_LONG_TAIL_CHARS = 400
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


def _fold_long(text: str) -> str:
    """A long turn's head and tail, cut at word boundaries, with what was left out noted."""
    if len(text) <= LONG_TURN_CHARS:
        return text
    head = text[:_LONG_HEAD_CHARS].rsplit(" ", 1)[0]
    tail = text[-_LONG_TAIL_CHARS:].split(" ", 1)[-1]
    left_out = len(text) - len(head) - len(tail)
    return f"{head} [… {left_out:,} more characters of this message …] {tail}"


def build_extraction_text(
    chunk: Chunk, *, assistant_context_chars: int = DEFAULT_ASSISTANT_CONTEXT_CHARS
) -> str:
    """The text the model reads for this chunk; "" when the chunk has no words of the user's.

    Every user turn, in order (long code blocks folded; a turn past LONG_TURN_CHARS kept as
    head and tail). Before a short answer (under SELF_CONTAINED_USER_CHARS), the last
    `assistant_context_chars` of the assistant turn it answers, marked as context, when that
    tail asks the user something: "Berlin." means nothing without "Which city are you in?",
    while a request or a statement of a sentence needs no context.
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
        lines.append(f"User: {_fold_long(_fold_code(text))}")
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
