"""Score a MEMORY against the facts planted in its export (`bench.planted`'s manifest).

    python -m bench.quality_score MEMORY.md bench/out/planted-10mb.json.manifest.json \
        bench/out/planted-10mb.json

`score_memory(memory_md, manifest, export_path)` returns:

- **recall**: the share of planted facts some MEMORY line recalls, overall and per kind. A line
  recalls a fact when, for every group of the fact's `key_terms`, one of the group's terms
  occurs in it (case-insensitive, as whole words). `under_heading` counts those also found under
  the MEMORY heading the fact belongs to (a date under Important Dates, a partner under People).
- **unsupported share**: of the MEMORY bullet lines with content words, the share that neither
  recalls a planted fact nor is *supported* by the export. A line is supported when at least
  `SUPPORT_SHARE` (60 %) of its distinct content words occur in **one** user message (or one
  custom-instruction / saved-memory signal) of the export, as read by our reader. Content words:
  lowercase words of 3+ letters or any digits, minus stop words ("the", "user", "their", "is",
  "has"…), crudely stemmed (-ies → -y; -ing, -ed, -es, -s dropped; a final e dropped), so
  "The user lives in Leeds" meets "I live in Leeds".

Limits of "supported": it is lexical. A faithful paraphrase with other words (a model writing
"spouse" for "wife", "Sept." for "September") counts as unsupported; a false line stitched from
words of one message counts as supported; on the generated filler, whose messages draw from a
vocabulary of ~70 words, lines made of those words are easy to support. It measures invention of
content, not correctness of attribution (who said it, and whether it is true of the user), and
it ignores assistant messages on purpose: a fact taken from the assistant's words is not
supported. Read the unsupported lines it lists before trusting the share.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from app.config import Settings
from app.processors.reading.export_reader import iter_conversations

__all__ = ["SUPPORT_SHARE", "content_words", "main", "memory_lines", "recalls", "score_memory"]

SUPPORT_SHARE = 0.6
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+\.)\s+(.*\S)")
_PROVENANCE = re.compile(r"\s*\(\d{4}-\d{2}-\d{2}\)$")
_EMPTY = re.compile(r"^nothing recorded\b", re.I)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOP_WORDS = """
    the a an and or but of to in on at for from with by as is are was were be been being am
    has have had having do does did not no yes this that these those it its they them their
    theirs themselves he she his her him we our you your i me my mine user user's users who
    whom which what when where why how there here than then also very really just about into
    over under after before so such can could would should will may might must one"""
_STOP = frozenset(_STOP_WORDS.split())


def memory_lines(memory_md: str) -> list[tuple[str, str]]:
    """(heading, text) of each bullet line; provenance dates and empty-category lines dropped."""
    heading, found = "", []
    for line in memory_md.splitlines():
        if match := _HEADING.match(line.strip()):
            heading = match.group(1)
        elif (bullet := _BULLET.match(line)) and not _EMPTY.match(bullet.group(1)):
            found.append((heading, _PROVENANCE.sub("", bullet.group(1))))
    return found


def _stem(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def content_words(text: str) -> set[str]:
    """The stemmed content words of `text` (see the module's definition)."""
    words = (w.removesuffix("'s") for w in _WORD.findall(text.lower().replace("’", "'")))
    return {_stem(w) for w in words if w not in _STOP and (len(w) >= 3 or w.isdigit())}


def recalls(line: str, key_terms: list[list[str]]) -> bool:
    """Whether `line` holds one term of every group of `key_terms`."""
    return all(
        any(re.search(rf"(?<!\w){re.escape(term)}(?!\w)", line, re.I) for term in group)
        for group in key_terms
    )


def _user_statements(export_path: Path) -> Iterator[str]:
    for conversation in iter_conversations(export_path, settings=Settings(_env_file=None)):
        yield from (s.text for s in conversation.signals)
        yield from (m.text for m in conversation.messages if m.role == "user")


def _load(manifest: Mapping[str, Any] | Path) -> Mapping[str, Any]:
    if isinstance(manifest, Path):
        loaded: Mapping[str, Any] = json.loads(manifest.read_text())
        return loaded
    return manifest


def score_memory(
    memory_md: str,
    manifest: Mapping[str, Any] | Path,
    export_path: Path,
    *,
    support_share: float = SUPPORT_SHARE,
) -> dict[str, Any]:
    """Recall of the planted facts and the share of unsupported lines (module docstring)."""
    facts = _load(manifest)["facts"]
    lines = memory_lines(memory_md)
    by_kind: dict[str, dict[str, Any]] = {}
    matched_lines: set[int] = set()
    missed = []
    for fact in facts:
        hits = [i for i, (_, text) in enumerate(lines) if recalls(text, fact["key_terms"])]
        matched_lines.update(hits)
        kind = by_kind.setdefault(fact["kind"], {"planted": 0, "recalled": 0, "under_heading": 0})
        kind["planted"] += 1
        kind["recalled"] += bool(hits)
        kind["under_heading"] += any(lines[i][0].lower() == fact["heading"].lower() for i in hits)
        if not hits:
            missed.append(fact["id"])
    for kind in by_kind.values():
        kind["recall"] = kind["recalled"] / kind["planted"]
    # Lines to check against the export: not a planted fact, with content words to look for.
    open_lines = {
        i: words
        for i, (_, text) in enumerate(lines)
        if i not in matched_lines and (words := content_words(text))
    }
    checked = len(open_lines) + len(matched_lines)
    if open_lines:
        for statement in _user_statements(export_path):
            said = content_words(statement)
            for i in [i for i, words in open_lines.items() if _covered(words, said, support_share)]:
                del open_lines[i]
            if not open_lines:
                break
    planted = len(facts)
    recalled = sum(k["recalled"] for k in by_kind.values())
    return {
        "planted": planted,
        "recalled": recalled,
        "recall": recalled / planted if planted else 0.0,
        "under_heading": sum(k["under_heading"] for k in by_kind.values()),
        "by_kind": by_kind,
        "missed": missed,
        "lines": checked,
        "unsupported": len(open_lines),
        "unsupported_share": len(open_lines) / checked if checked else 0.0,
        "unsupported_lines": [lines[i][1] for i in sorted(open_lines)][:50],
        "support_share": support_share,
    }


def _covered(words: set[str], said: set[str], share: float) -> bool:
    return len(words & said) >= share * len(words)


def main() -> None:
    parser = argparse.ArgumentParser(description="Score a MEMORY against a planted export.")
    parser.add_argument("memory", type=Path, help="the MEMORY markdown (e.g. MEMORY.md)")
    parser.add_argument("manifest", type=Path, help="the export's .manifest.json")
    parser.add_argument("export", type=Path, help="the planted export")
    parser.add_argument("--support-share", type=float, default=SUPPORT_SHARE)
    args = parser.parse_args()
    score = score_memory(
        args.memory.read_text(), args.manifest, args.export, support_share=args.support_share
    )
    print(json.dumps(score, indent=2))


if __name__ == "__main__":
    main()
