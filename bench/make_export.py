"""Deterministic generator of realistic ChatGPT exports of a given size.

`python -m bench.make_export --size-mb 100 --format zip --out /tmp/x.zip [--seed 7]`
`python -m bench.make_export --size-mb 100 --shape short --out bench/out/short-100mb.json`
`python -m bench.make_export --shape one-message --conversations 20000 --out bench/out/one.json`

The same seed and size always give the same bytes. Conversations carry what real exports do:
regenerated branches (the visible one is `current_node`'s), a hidden system root, custom
instructions, `bio` memory writes, browsing tool calls, multimodal parts with image pointers,
null titles and times, long pastes, and nodes without `children` or `content_type`. The text is
drawn from a vocabulary so it compresses like prose (~3-4:1), not like a zip bomb.

Shapes (`SHAPES`): "default" (~9 turns a conversation on average, exponentially spread); "short"
(6 in 10 conversations have one or two turns, the rest as default, so about 7 in 10 have at most
4 messages); "one-message" (one user message of a sentence or two, no answer, no paste: a
question asked and left; ~0.95 KB each: 20,000 make 18.3 MiB). The default
shape's bytes are unchanged by the others' existence: the same seed and size give the same file.
"""

from __future__ import annotations

import argparse
import json
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["SHAPES", "generate_conversation", "shaped_conversation", "write_export"]

SHAPES = ("default", "short", "one-message")
SHORT_SHARE = 0.6

WORDS = [
    "the",
    "a",
    "to",
    "and",
    "of",
    "in",
    "I",
    "my",
    "we",
    "you",
    "it",
    "is",
    "was",
    "for",
    "on",
    "with",
    "that",
    "this",
    "at",
    "be",
    "have",
    "not",
    "but",
    "from",
    "project",
    "deploy",
    "garden",
    "recipe",
    "sister",
    "Lisbon",
    "budget",
    "running",
    "piano",
    "thesis",
    "Python",
    "database",
    "morning",
    "weekend",
    "anxious",
    "happy",
    "plan",
    "meeting",
    "doctor",
    "train",
    "coffee",
    "novel",
    "invoice",
    "holiday",
    "kubernetes",
    "marathon",
    "daughter",
    "mortgage",
    "vegetarian",
    "guitar",
    "interview",
    "promotion",
    "landlord",
    "chapter",
    "deadline",
    "migraine",
    "yoga",
    "startup",
    "climbing",
    "spreadsheet",
    "wedding",
    "puppy",
    "lecture",
]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    return " ".join(words).capitalize() + rng.choice(".?!.")


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _message(
    rng: random.Random, role: str, t: float | None, content: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"m{rng.getrandbits(64):016x}",
        "author": {"role": role, "name": None, "metadata": {}},
        "create_time": t,
        "content": content,
        "status": "finished_successfully",
        "metadata": extra.pop("metadata", {}),
        "recipient": extra.pop("recipient", "all"),
        **extra,
    }


def generate_conversation(
    rng: random.Random, index: int, *, turns: int | None = None
) -> dict[str, Any]:
    """One conversation dict, as ChatGPT exports it, of `turns` turns (drawn when None)."""
    t0 = 1_600_000_000 + index * 3_600.0 + rng.random()
    mapping: dict[str, dict[str, Any]] = {}

    def add(parent: str | None, message: dict[str, Any] | None) -> str:
        node_id = f"n{rng.getrandbits(64):016x}"
        node: dict[str, Any] = {"id": node_id, "message": message, "parent": parent}
        if rng.random() < 0.7:  # newer exports omit children
            node["children"] = []
        mapping[node_id] = node
        if parent is not None and "children" in mapping[parent]:
            mapping[parent]["children"].append(node_id)
        return node_id

    node = add(None, None)
    node = add(
        node,
        _message(
            rng,
            "system",
            None,
            {"content_type": "text", "parts": [""]},
            metadata={"is_visually_hidden_from_conversation": True},
        ),
    )
    if index % 25 == 0:
        node = add(
            node,
            _message(
                rng,
                "user",
                None,
                {
                    "content_type": "user_editable_context",
                    "user_profile": "User profile:\n```" + _paragraph(rng, 2) + "```",
                    "user_instructions": "```" + _sentence(rng) + "```",
                },
                metadata={"is_visually_hidden_from_conversation": True},
            ),
        )
    t = t0 if rng.random() > 0.05 else None
    if turns is None:
        turns = max(1, int(rng.expovariate(1 / 9)))
    for turn in range(turns):
        text = _paragraph(rng, rng.randint(1, 4))
        if rng.random() < 0.03:  # a long paste
            text += "\n\n" + "\n".join(_paragraph(rng, 5) for _ in range(rng.randint(20, 200)))
        if rng.random() < 0.05:
            content = {
                "content_type": "multimodal_text",
                "parts": [
                    {
                        "content_type": "image_asset_pointer",
                        "asset_pointer": "file-service://x",
                        "size_bytes": 1,
                    },
                    text,
                ],
            }
        elif rng.random() < 0.05:
            content = {"parts": [text]}  # no content_type
        else:
            content = {"content_type": "text", "parts": [text]}
        user = add(node, _message(rng, "user", t, content))
        if rng.random() < 0.08:  # a browsing tool chain before the answer
            call = add(
                user,
                _message(
                    rng,
                    "assistant",
                    t,
                    {
                        "content_type": "code",
                        "language": "unknown",
                        "text": 'search("' + _sentence(rng) + '")',
                    },
                    recipient="browser",
                ),
            )
            user = add(
                call,
                _message(
                    rng,
                    "tool",
                    t,
                    {
                        "content_type": "tether_browsing_display",
                        "result": "【0†" + _sentence(rng) + "】",
                    },
                ),
            )
        if rng.random() < 0.1:  # a regenerated answer: the old branch stays in the tree
            add(
                user,
                _message(
                    rng, "assistant", t, {"content_type": "text", "parts": [_paragraph(rng, 3)]}
                ),
            )
        answer = _paragraph(rng, rng.randint(2, 10)) + " 【3:0†source】"
        node = add(
            user,
            _message(
                rng, "assistant", t, {"content_type": "text", "parts": [answer]}, end_turn=True
            ),
        )
        if turn == 0 and rng.random() < 0.04:
            node = add(
                node,
                _message(
                    rng,
                    "assistant",
                    t,
                    {"content_type": "text", "parts": ["User " + _sentence(rng)]},
                    recipient="bio",
                ),
            )
        if t is not None:
            t += rng.uniform(5, 600)
    return {
        "title": None if rng.random() < 0.05 else _sentence(rng)[:60],
        "create_time": None if rng.random() < 0.02 else t0,
        "update_time": t,
        "mapping": mapping,
        "current_node": node,
        "conversation_id": f"00000000-0000-4000-8000-{index:012d}",
        "id": f"00000000-0000-4000-8000-{index:012d}",
        "is_archived": rng.random() < 0.1,
        "default_model_slug": "gpt-4o",
    }


def _one_message(rng: random.Random, index: int) -> dict[str, Any]:
    """A question asked and left: the root, custom instructions every 25th time (as in the
    default shape), one user message of one or two sentences, no answer, no paste."""
    t0 = 1_600_000_000 + index * 3_600.0 + rng.random()
    nodes: list[dict[str, Any]] = [{"message": None}]
    if index % 25 == 0:
        profile = {
            "content_type": "user_editable_context",
            "user_profile": "User profile:\n```" + _paragraph(rng, 2) + "```",
            "user_instructions": "```" + _sentence(rng) + "```",
        }
        hidden = {"is_visually_hidden_from_conversation": True}
        nodes.append({"message": _message(rng, "user", None, profile, metadata=hidden)})
    text = _paragraph(rng, rng.randint(1, 2))
    nodes.append({"message": _message(rng, "user", t0, {"content_type": "text", "parts": [text]})})
    mapping: dict[str, dict[str, Any]] = {}
    parent: str | None = None
    for node in nodes:
        node_id = f"n{rng.getrandbits(64):016x}"
        mapping[node_id] = {"id": node_id, **node, "parent": parent, "children": []}
        if parent is not None:
            mapping[parent]["children"].append(node_id)
        parent = node_id
    conversation_id = f"00000000-0000-4000-8000-{index:012d}"
    return {
        "title": None if rng.random() < 0.05 else _sentence(rng)[:60],
        "create_time": t0,
        "update_time": t0,
        "mapping": mapping,
        "current_node": parent,
        "conversation_id": conversation_id,
        "id": conversation_id,
        "is_archived": False,
        "default_model_slug": "gpt-4o",
    }


def shaped_conversation(rng: random.Random, index: int, shape: str) -> dict[str, Any]:
    """One conversation of the export shape `shape` (one of `SHAPES`)."""
    if shape == "short":
        turns = rng.choice((1, 2)) if rng.random() < SHORT_SHARE else None
        return generate_conversation(rng, index, turns=turns)
    if shape == "one-message":
        return _one_message(rng, index)
    if shape != "default":
        raise ValueError(f"unknown export shape {shape!r}: one of {', '.join(SHAPES)}")
    return generate_conversation(rng, index)


def _documents(
    size: int, seed: int, per_file: int, *, shape: str = "default", count: int | None = None
) -> Iterator[Iterator[bytes]]:
    """JSON arrays (as byte chunks), each up to `per_file` bytes, `size` bytes in total (or
    `count` conversations when given)."""
    rng = random.Random(seed)
    written = 0
    index = 0

    def more() -> bool:
        return index < count if count is not None else written < size

    while more():

        def one_file() -> Iterator[bytes]:
            nonlocal written, index
            yield b"["
            in_file = 0
            while more() and in_file < per_file:
                body = json.dumps(shaped_conversation(rng, index, shape)).encode()
                yield (b"," if in_file else b"") + body
                in_file += len(body) + 1
                written += len(body) + 1
                index += 1
            yield b"]"

        yield one_file()


def write_export(
    out: Path,
    *,
    size_mb: float,
    fmt: str,
    seed: int = 7,
    split_mb: float = 0,
    shape: str = "default",
    conversations: int | None = None,
) -> Path:
    """Write an export of about `size_mb` MiB of JSON (or of exactly `conversations`
    conversations, when given) in `shape`. `fmt` is "json" or "zip"; with `split_mb` > 0 the zip
    uses the split form (conversations-NNN.json + export_manifest.json)."""
    size = int(size_mb * 1024 * 1024)
    whole = size + 1 if conversations is None else 2**62
    out.parent.mkdir(parents=True, exist_ok=True)
    documents = _documents(
        size,
        seed,
        int(split_mb * 1024 * 1024) if split_mb and fmt != "json" else whole,
        shape=shape,
        count=conversations,
    )
    if fmt == "json":
        with out.open("wb") as handle:
            for part in next(documents):
                handle.write(part)
        return out
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        names = []
        for n, document in enumerate(documents):
            name = f"conversations-{n:03d}.json" if split_mb else "conversations.json"
            names.append(name)
            with archive.open(name, "w", force_zip64=True) as member:
                for part in document:
                    member.write(part)
        if split_mb:
            archive.writestr("export_manifest.json", json.dumps({"conversations": names}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, help="about this many MiB of JSON")
    parser.add_argument(
        "--conversations", type=int, help="exactly this many conversations (instead of a size)"
    )
    parser.add_argument("--shape", choices=SHAPES, default="default")
    parser.add_argument("--format", choices=("json", "zip"), default="json")
    parser.add_argument(
        "--split-mb", type=float, default=0, help="zip only: split form, MiB per file"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.size_mb is None and args.conversations is None:
        parser.error("give --size-mb or --conversations")
    path = write_export(
        args.out,
        size_mb=args.size_mb or 0,
        fmt=args.format,
        seed=args.seed,
        split_mb=args.split_mb,
        shape=args.shape,
        conversations=args.conversations,
    )
    print(f"{path}\t{path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
