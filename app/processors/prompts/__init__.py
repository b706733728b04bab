"""Our prompts, one module per task, versioned, with the reply schemas and the parsers that invert
the messages they build.

`PROMPT_VERSION` is part of the extractor version that keys the fact cache. Bump it (p1 → p2) when
a change could change what the model returns for the same input: wording of a system prompt, the
layout of a user message, a tool schema or a category. Do not bump it for comments or refactors
that leave every built string byte-identical (tests/adapters pin the layout and round trip).

Inputs are delimited by tagged blocks (`blocks.py`); the `parse_*` helpers recover the task input
from a built message: the Messages-API simulator uses them to answer through the offline provider.
"""

from __future__ import annotations

from app.processors.prompts.extraction import (
    EXTRACT_SYSTEM,
    EXTRACT_TOOL,
    MAX_FACTS_PER_CHUNK,
    ExtractedFact,
    ExtractedFacts,
    excerpt_overhead_text,
    extraction_message,
    extraction_tool_input,
    facts_cap,
    parse_extraction_input,
    parse_extraction_reply,
)
from app.processors.prompts.memory import (
    EMPTY_CATEGORY_LINE,
    MEMORY_HEADINGS,
    MEMORY_SYSTEM,
    memory_message,
    parse_memory_input,
)
from app.processors.prompts.reduce import (
    REDUCE_SYSTEM,
    REDUCE_TOOL,
    ReducedFacts,
    parse_reduce_input,
    reduce_message,
)
from app.processors.prompts.sections import (
    SECTIONS_SYSTEM,
    SECTIONS_TOOL,
    parse_sections_input,
    sections_message,
)
from app.processors.prompts.tools import ToolSpec

__all__ = [
    "EMPTY_CATEGORY_LINE",
    "EXTRACT_SYSTEM",
    "MAX_FACTS_PER_CHUNK",
    "MEMORY_HEADINGS",
    "MEMORY_SYSTEM",
    "PROMPT_VERSION",
    "REDUCE_SYSTEM",
    "SECTIONS_SYSTEM",
    "ExtractedFact",
    "ExtractedFacts",
    "ReducedFacts",
    "ToolSpec",
    "excerpt_overhead_text",
    "extraction_message",
    "extraction_tool_input",
    "facts_cap",
    "memory_message",
    "parse_extraction_input",
    "parse_extraction_reply",
    "parse_memory_input",
    "parse_reduce_input",
    "parse_sections_input",
    "reduce_message",
    "sections_message",
    "task_for_tool",
    "tool_for",
]

# p3: a block says only what the one before it did not (date, title); the reply names excerpts
# without facts in one list of ids; signal facts are marked by their block, not by the model.
# p2: packed requests — several excerpts a request, each with its id; the reply listed every
# excerpt's facts under its id (issue 10). p1 sent one chunk a request.
PROMPT_VERSION = "p3"

# The forced tool of each structured task; `write_memory` replies in plain markdown.
_TOOLS: dict[str, ToolSpec] = {
    "extract_facts": EXTRACT_TOOL,
    "reduce_facts": REDUCE_TOOL,
    "write_sections": SECTIONS_TOOL,
}


def tool_for(task: str) -> ToolSpec | None:
    """The forced tool of a task; None for `write_memory`, whose reply is plain markdown."""
    return _TOOLS.get(task)


def task_for_tool(name: str) -> str | None:
    return next((task for task, spec in _TOOLS.items() if spec.name == name), None)
