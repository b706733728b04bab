"""Generate the corpus of bad exports the reader must refuse (or survive) with a clear message.

Run it: `python -m tests.support.make_bad_exports /tmp/bad` — or import `make_bad_exports(dir)`,
which returns one `BadCase` per file: `expect` is a phrase the `BadExport` message must contain,
or None when the file must be read (with damage contained) rather than refused.
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BadCase", "make_bad_exports"]


@dataclass(frozen=True)
class BadCase:
    name: str
    path: Path
    expect: str | None


def _node(node_id: str, parent: str | None, role: str, text: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "parent": parent,
        "message": {
            "id": f"m-{node_id}",
            "author": {"role": role},
            "create_time": 1_700_000_000,
            "content": {"content_type": "text", "parts": [text]},
        },
    }


def _conversation(conv_id: str, nodes: list[dict[str, Any]], current: str | None) -> dict[str, Any]:
    return {
        "id": conv_id,
        "title": None,
        "create_time": None,
        "current_node": current,
        "mapping": {n["id"]: n for n in nodes},
    }


def _good() -> dict[str, Any]:
    return _conversation(
        "good",
        [_node("u", None, "user", "I live in Lisbon."), _node("a", "u", "assistant", "Noted.")],
        "a",
    )


def make_bad_exports(directory: Path) -> list[BadCase]:
    directory.mkdir(parents=True, exist_ok=True)
    cases: list[BadCase] = []

    def write(name: str, data: bytes, expect: str | None) -> None:
        path = directory / name
        path.write_bytes(data)
        cases.append(BadCase(name, path, expect))

    def dump(value: Any) -> bytes:
        return json.dumps(value).encode()

    write("not_json.json", b"Hello, this is a text file, not an export.\n", "is not JSON")
    write("html_page.json", b"<!DOCTYPE html><html><body>Error</body></html>", "looks like HTML")
    write("empty_file.json", b"", "empty (0 bytes)")
    write("truncated.json", dump([_good(), _good()])[:-40], "cut off")
    write("empty_list.json", b"[]", "empty list")
    write("wrong_format.json", dump([{"channel": "general", "text": "hi"}]), "not a ChatGPT")
    write("object_without_list.json", dump({"user": "x", "count": 3}), "without a conversations")
    write(
        "invalid_utf8.json",
        b'[{"id": "x", "title": "caf\xe9", "mapping": {}}]',
        "not valid UTF-8",
    )
    write("utf16.json", "[]".encode("utf-16"), "UTF-16")
    write(
        "no_mapping.json",
        dump([{"id": "c1", "title": "t", "create_time": 1.0, "current_node": "n1"}]),
        "no `mapping`",
    )
    cyclic = _conversation(
        "cyclic", [_node("a", "b", "user", "A"), _node("b", "a", "assistant", "B")], "a"
    )
    write("cyclic_parent_chain.json", dump([cyclic]), "cyclic parent chain")
    # A dangling parent is survivable (cut-down exports have them): the readable part is kept.
    dangling = _conversation(
        "dangling",
        [_node("u", "ghost", "user", "I am a nurse."), _node("a", "u", "assistant", "Noted.")],
        "a",
    )
    write("dangling_parent_chain.json", dump([dangling]), None)
    # Everything unreadable at once: the message names each reason.
    write("all_unreadable.json", dump([cyclic, {"id": "x", "create_time": 1}]), "could be read")
    # One 50 MB message: read and truncated, not fatal, not a hang.
    huge = _conversation(
        "huge", [_node("u", None, "user", "paste " * (50 * 1024 * 1024 // 6))], "u"
    )
    write("huge_message.json", dump([huge]), None)

    write("zip_without_conversations.zip", _zip({"readme.txt": b"hello"}), "no conversations.json")
    write("damaged.zip", _zip({"conversations.json": dump([_good()])})[:-30], "damaged")
    bomb = directory / "zip_bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("conversations.json", "w", force_zip64=True) as member,
    ):
        member.write(b"[")
        block = b" " * (1024 * 1024)
        for _ in range(20):  # 20 MB of whitespace: compresses ~1000:1
            member.write(block)
        member.write(b"]")
    cases.append(BadCase("zip_bomb.zip", bomb, "zip bomb"))
    write(
        "gzip_bomb.json.gz",
        gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]", compresslevel=9),
        "zip bomb",
    )
    write("truncated.json.gz", gzip.compress(dump([_good()] * 50))[:-20], "damaged")
    return cases


def _zip(members: dict[str, bytes]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_exports")
    for case in make_bad_exports(out):
        print(f"{case.path}\t{case.expect or '(readable)'}")
