"""One cost model for any extraction design: calls, input tokens, output tokens, USD.

Input tokens are what a design sends, by our estimator (`estimate_tokens`: ceil(UTF-8 bytes / 4)).
Output tokens cannot be read off a request, so they are modelled the same way for every design,
by what the call would extract rather than a flat amount per call:

    output tokens = calls × tokens(empty reply) + Σ over facts tokens(the fact as the reply has it)

- **How many facts a call yields** is counted by running the offline rule-based extractor
  (`OfflineLLM.extract_facts`) over the call's own request text: the user's first-person
  statements and signals it carries. A model finds more (and paraphrases), so the absolute output
  is a floor; but both designs are counted by the same rules over the text each sends, so the
  same statement read twice (an overlap, a repeated message) is paid twice, as it would be.
- **What a fact costs** depends on the reply format: ours is one `record_facts` item
  `{"category": …, "fact": …}` (compact JSON, as tool input is generated); the
  earlier design answered a five-key JSON object pretty-printed like its prompt's example, facts as
  strings or small objects. A `ReplyFormat` holds both: `skeleton` (the empty reply: the per-call
  overhead) and `item` (one fact as written, or None when the format has no place for it).
- **Not modelled** (the same omission for both): the tool-call framing of a `tool_use` block
  (a few tokens a call, ours only), code fences a text reply may add, and Anthropic's hidden
  tool-use system prompt on the input side (hundreds of tokens a call, ours only; see
  docs/BENCHMARKS.md). Measure them with `messages.count_tokens` and a real reply before
  trusting a ratio closer than ~5 %.

Prices: `app.pricing.price_for` (Haiku 4.5: $1 / $5 per M input / output); the Message Batches
API halves both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from app.adapters.offline_llm import OfflineLLM
from app.domain import Fact, FactCategory
from app.ports import ExtractionRequest
from app.pricing import BATCH_DISCOUNT, ModelPrice
from app.processors.reading.text import estimate_tokens

__all__ = [
    "BATCH_DISCOUNT",
    "EARLIER_REPLY",
    "OUR_REPLY",
    "DesignCost",
    "ReplyFormat",
    "offline_facts",
    "output_tokens",
]

C = FactCategory


@dataclass(frozen=True)
class ReplyFormat:
    """How a design's reply writes facts: the empty reply, and one fact as it appears in it."""

    name: str
    skeleton: str
    item: Callable[[Fact], str | None]

    def item_tokens(self, fact: Fact) -> int | None:
        text = self.item(fact)
        return None if text is None else estimate_tokens(text)


def output_tokens(facts: Iterable[Fact], calls: int, reply: ReplyFormat) -> int:
    """Modelled output tokens of `calls` replies in `reply`'s format carrying `facts` in all.
    Facts the format has no place for cost nothing (the design would not have returned them)."""
    total = calls * estimate_tokens(reply.skeleton)
    for fact in facts:
        total += reply.item_tokens(fact) or 0
    return total


def _our_item(fact: Fact) -> str:
    item = {"category": fact.category.value, "fact": fact.text}
    return json.dumps(item, ensure_ascii=False) + ", "


# Ours is priced by `app.processors.extraction.plan.estimate_extraction` (the reply's own JSON:
# excerpts with facts under their ids, the others' ids in one list); this format is for the
# unpacked comparison rows.
OUR_REPLY = ReplyFormat(name="record_facts tool input", skeleton='{"excerpts": []}', item=_our_item)

# The earlier design's reply: its five keys, pretty-printed as in its prompt's example. Facts of
# categories it never asked for (About Me, People) have no key: a model following that prompt
# drops or folds them, so they are not priced (the conservative choice: it lowers the earlier
# design's cost, against which ours is compared).
_EARLIER_KEYS = ("preferences", "projects", "dates", "beliefs", "decisions")


def _earlier_value(fact: Fact) -> tuple[str, Any] | None:
    text = fact.text
    if fact.category is C.PREFERENCES:
        return "preferences", text
    if fact.category is C.BELIEFS_VALUES:
        return "beliefs", text
    if fact.category is C.PROJECTS:
        name = " ".join(text.removeprefix("The user is ").split()[:4])
        return "projects", {"name": name, "description": text, "details": ""}
    if fact.category is C.IMPORTANT_DATES:
        return "dates", {"event": text, "date": ""}
    if fact.category is C.DECISIONS_CONTEXT:
        return "decisions", {"decision": text, "context": ""}
    return None


def _earlier_item(fact: Fact) -> str | None:
    found = _earlier_value(fact)
    if found is None:
        return None
    # An element of a top-level list in an indent=2 document: 4 spaces deep, then ",\n".
    rendered = json.dumps(found[1], indent=2, ensure_ascii=False).replace("\n", "\n    ")
    return "    " + rendered + ",\n"


EARLIER_REPLY = ReplyFormat(
    name="five-key JSON object",
    skeleton=json.dumps({key: [] for key in _EARLIER_KEYS}, indent=2),
    item=_earlier_item,
)


@dataclass
class DesignCost:
    """One design's extraction calls over one export, added up call by call."""

    name: str
    reply: ReplyFormat = field(repr=False)
    max_tokens: int
    chunks: int = 0
    calls: int = 0
    excerpts: int = 0  # excerpts sent (one per call for a design that does not pack)
    skipped: int = 0  # chunks that made no call
    text_tokens: int = 0  # the conversation text sent, without prompt or wrapper
    input_tokens: int = 0  # the whole request
    facts: int = 0  # facts the offline rules find in what was sent
    unpriced_facts: int = 0  # of them, facts the reply format has no place for
    output_tokens: int = 0
    reserved_output_tokens: int = 0  # Σ max_tokens: what counts against the output limit

    def add_call(
        self,
        *,
        input_tokens: int,
        text_tokens: int,
        facts: list[Fact],
        excerpts: int = 1,
        max_tokens: int | None = None,
    ) -> None:
        self.calls += 1
        self.excerpts += excerpts
        self.input_tokens += input_tokens
        self.text_tokens += text_tokens
        self.facts += len(facts)
        self.unpriced_facts += sum(1 for f in facts if self.reply.item(f) is None)
        self.output_tokens += output_tokens(facts, 1, self.reply)
        self.reserved_output_tokens += max_tokens if max_tokens is not None else self.max_tokens

    def usd(self, price: ModelPrice, *, batch: bool = False) -> float:
        usd = (self.input_tokens * price.input + self.output_tokens * price.output) / 1e6
        return usd * BATCH_DISCOUNT if batch else usd

    def as_dict(self, price: ModelPrice) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "reply"},
            "reply_format": self.reply.name,
            "usd_realtime": round(self.usd(price), 4),
            "usd_batch": round(self.usd(price, batch=True), 4),
        }


@contextmanager
def offline_facts() -> Iterator[Callable[[ExtractionRequest], list[Fact]]]:
    """The facts `OfflineLLM.extract_facts` finds in a request, called from synchronous code
    (one event loop for the whole run, not one per call)."""
    llm = OfflineLLM()
    with asyncio.Runner() as runner:

        def facts(request: ExtractionRequest) -> list[Fact]:
            result = runner.run(llm.extract_facts(request)).value
            return [fact for found in result.facts for fact in found or ()]

        yield facts
