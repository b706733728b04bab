"""reduce_facts: merge one category's facts into fewer sentences."""

from __future__ import annotations

import re

from pydantic import field_validator

from app.domain import FactCategory
from app.ports import ReduceRequest
from app.processors.prompts.blocks import Tag, block, one
from app.processors.prompts.tools import STR_LIST, Reply, ToolSpec, obj

__all__ = ["REDUCE_SYSTEM", "REDUCE_TOOL", "ReducedFacts", "parse_reduce_input", "reduce_message"]

REDUCE_SYSTEM = """\
You merge a list of facts about one person, "the user", all from one category, into a shorter list.
The facts are listed newest first. Merge duplicates and near-duplicates into one sentence, combine \
closely related facts, and where two facts conflict keep only the newer one (listed earlier). If \
the list is still too long, drop the least durable and least specific facts. Never invent, \
generalise beyond the evidence or add commentary. Each output item is one self-contained sentence \
about the user in the third person. Reply only by calling record_merged_facts."""

_REDUCE_INSTRUCTION = (
    "Merge the facts above into at most {target} sentences and call record_merged_facts."
)

REDUCE_TOOL = ToolSpec(
    name="record_merged_facts",
    description="Record the merged list of facts for the category.",
    input_schema=obj({"facts": STR_LIST}),
)


class ReducedFacts(Reply):
    facts: list[str]

    @field_validator("facts")
    @classmethod
    def _drop_blank(cls, facts: list[str]) -> list[str]:
        return [f.strip() for f in facts if f.strip()]


def reduce_message(request: ReduceRequest) -> str:
    lines = "\n".join(f"{i}. {' '.join(f.split())}" for i, f in enumerate(request.facts, 1))
    return "\n\n".join(
        [
            block(Tag.CATEGORY, request.category.value),
            block(Tag.TARGET, str(request.target_count)),
            block(Tag.FACTS, lines),
            _REDUCE_INSTRUCTION.format(target=request.target_count),
        ]
    )


def parse_reduce_input(user_text: str) -> ReduceRequest:
    category, target, facts = (one(user_text, t) for t in (Tag.CATEGORY, Tag.TARGET, Tag.FACTS))
    if category is None or target is None or facts is None:
        raise ValueError("not a reduce_facts message")
    items = [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", facts[1], re.MULTILINE)]
    return ReduceRequest(
        category=FactCategory(category[1].strip()),
        facts=tuple(items),
        target_count=int(target[1]),
    )
