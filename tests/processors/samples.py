"""Where the shared public samples live, and what each holds (counted by hand).

Counts were made by reading each file: for ChatGPT, walk `parent` from `current_node` (or from the
newest leaf when there is none) and count user/assistant nodes whose content is visible text
(not hidden, not a tool call such as `recipient: browser`, not a tool/system node); for Claude.ai,
count human/assistant messages with a non-empty `text` block in `content[]`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "samples"

# file: (format, conversations, user messages, assistant messages, user signals)
EXPECTED: dict[str, tuple[str, int, int, int, int]] = {
    # conv 1: 3 user questions, 3 assistant answers (the 4 `code` → browser calls and the
    # tether_* tool nodes and the hidden system node are dropped); conv 2: 2 + 2.
    "librechat-chatgpt-export.json": ("chatgpt", 2, 5, 5, 0),
    # current_node is absent from mapping; the newest leaf is the assistant answer, whose
    # parent is a tool node whose own parent is missing: 1 assistant message survives.
    "librechat-chatgpt-citations.json": ("chatgpt", 1, 0, 1, 0),
    # conv 1: 2 + 2 plus custom instructions (user_editable_context, hidden); conv 2 has no
    # mapping (skipped); conv 3: 1 + 1.
    "librechat-chatgpt-modern-export.json": ("chatgpt", 2, 3, 3, 1),
    # 7 conversations, each user/assistant/user/assistant/user.
    "convonaut-conversations.json": ("chatgpt", 7, 21, 14, 0),
    # conv 1: node-1..node-5 = user, assistant, assistant, user, assistant; conv 2: active-1..4
    # (the active-b branch is not on the current_node path).
    "marcopolo-synthetic-multimodal-conversations.json": ("chatgpt", 2, 4, 5, 0),
    # 5 conversations of one user + one assistant message, no current_node (newest leaf).
    "looselips-minimal-no-content-type.json": ("chatgpt", 5, 5, 5, 0),
    # 8 named cases; "cycle" is skipped (its order is unknowable). linear 1+1, regenerate 1+1
    # (new answer), attachment 1+1, missingParent 0+1, unicode 1+1, unknownPart 1+1,
    # structuralHidden 1+1 (system and tool dropped).
    "2015pulsar-cases-conversations.json": ("chatgpt", 7, 6, 7, 0),
    # one human text block, one assistant text block (the thinking block is dropped).
    "owi-claude-thinking.json": ("claude", 1, 1, 1, 0),
    # m1 human text, m2 assistant text (tool_use/tool_result dropped), m3 human text, m4 only
    # tool blocks (dropped), m5 image only (dropped).
    "owi-claude-tooluse.json": ("claude", 1, 2, 1, 0),
}


def sample(name: str) -> Path:
    """The sample's path; fails (never skips) when the shared folder is missing."""
    if not SAMPLES_DIR.is_dir():
        pytest.fail(
            f"The shared samples folder is missing: {SAMPLES_DIR.resolve()}. These tests read the "
            "public export samples in place; check out ../shared/samples beside the repository."
        )
    return SAMPLES_DIR / name
