from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.errors import BadExport
from app.processors.reading.export_reader import ExportReader, iter_conversations
from tests.processors.samples import EXPECTED, sample
from tests.support.make_bad_exports import BadCase, make_bad_exports

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]


def _counts(path: Path) -> tuple[str, int, int, int, int]:
    reader = ExportReader(path, settings=SETTINGS)
    conversations = list(reader)
    roles = [m.role for c in conversations for m in c.messages]
    signals = sum(len(c.signals) for c in conversations)
    return (
        reader.format,
        len(conversations),
        roles.count("user"),
        roles.count("assistant"),
        signals,
    )


@pytest.mark.samples
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_parses_with_the_hand_counted_numbers(name: str) -> None:
    assert _counts(sample(name)) == EXPECTED[name]


@pytest.mark.samples
def test_the_samples_folder_has_no_file_without_expected_counts() -> None:
    on_disk = {p.name for p in sample("INVENTORY.md").parent.glob("*.json")}
    assert on_disk == set(EXPECTED)


@pytest.mark.samples
def test_visible_branch_text_roles_and_signals() -> None:
    by_id = {
        c.id: c
        for c in iter_conversations(
            sample("2015pulsar-cases-conversations.json"), settings=SETTINGS
        )
    }
    assert [m.text for m in by_id["regenerate"].messages] == [
        "Give me an answer",
        "NEW ACTIVE ANSWER",
    ]
    assert [m.text for m in by_id["structuralHidden"].messages] == [
        "Visible user",
        "Visible assistant",
    ]
    assert [m.text for m in by_id["unknownPart"].messages] == ["Show a widget", "Visible text"]
    assert "cycle" not in by_id
    assert by_id["linear"].messages[0].created_at is not None

    modern = list(
        iter_conversations(sample("librechat-chatgpt-modern-export.json"), settings=SETTINGS)
    )
    (signal,) = modern[0].signals
    assert signal.kind == "custom_instructions"
    assert "The user is an SRE." in signal.text
    assert "Answer concisely." in signal.text
    assert modern[0].title == "Deploying the staging cluster"


@pytest.mark.samples
def test_citation_markers_are_stripped() -> None:
    (conv,) = iter_conversations(sample("librechat-chatgpt-citations.json"), settings=SETTINGS)
    raw = sample("librechat-chatgpt-citations.json").read_text()
    assert "†" in raw  # the sample really carries markers...
    assert "†" not in conv.messages[0].text
    assert "【" not in conv.messages[0].text


@pytest.mark.samples
def test_claude_uses_text_blocks_not_thinking() -> None:
    (conv,) = iter_conversations(sample("owi-claude-thinking.json"), settings=SETTINGS)
    assert [m.text for m in conv.messages] == [
        "Can you greet me?",
        "Hello there! It's great to hear from you.",
    ]
    assert conv.title == "Thinking Demo"
    assert conv.created_at is not None


# --- containers and shapes ---------------------------------------------------------------------


def _export(n: int, *, start: int = 0) -> list[dict[str, Any]]:
    def node(nid: str, parent: str | None, role: str, text: str) -> dict[str, Any]:
        content = {"content_type": "text", "parts": [text]}
        return {
            "id": nid,
            "parent": parent,
            "message": {"author": {"role": role}, "content": content},
        }

    return [
        {
            "id": f"c{i}",
            "title": f"T{i}",
            "current_node": "a",
            "mapping": {
                "u": node("u", None, "user", f"question {i}"),
                "a": node("a", "u", "assistant", "ok"),
            },
        }
        for i in range(start, start + n)
    ]


def _ids(path: Path) -> list[str]:
    return [c.id for c in iter_conversations(path, settings=SETTINGS)]


def test_gzip_and_wrapped_forms(tmp_path: Path) -> None:
    gz = tmp_path / "export.bin"  # the name says nothing: magic bytes decide
    gz.write_bytes(gzip.compress(json.dumps(_export(3)).encode()))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"user": {"id": 1}, "conversations": _export(2)}))
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf \n" + json.dumps(_export(1)).encode())
    assert _ids(gz) == ["c0", "c1", "c2"]
    assert ExportReader(gz, settings=SETTINGS).container == "gzip"
    assert _ids(wrapped) == ["c0", "c1"]
    assert _ids(bom) == ["c0"]


def test_zip_split_members_follow_the_manifest_order(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations-001.json", json.dumps(_export(2, start=2)))
        archive.writestr("conversations-000.json", json.dumps(_export(2, start=0)))
        archive.writestr("conversations-002.json", json.dumps(_export(1, start=4)))
        manifest = {
            "files": ["conversations-000.json", "conversations-001.json", "conversations-002.json"]
        }
        archive.writestr("export_manifest.json", json.dumps(manifest))
        archive.writestr("user.json", "{}")
    assert _ids(path) == ["c0", "c1", "c2", "c3", "c4"]
    assert ExportReader(path, settings=SETTINGS).format == "chatgpt"


def test_zip_single_member(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("chat.html", "<html></html>")
        archive.writestr("conversations.json", json.dumps(_export(2)))
    assert _ids(path) == ["c0", "c1"]


def test_oversize_zip_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("conversations.json", json.dumps(_export(200)))
    small = Settings(_env_file=None, max_zip_member_bytes=10_000)  # type: ignore[call-arg]
    with pytest.raises(BadExport, match="MAX_ZIP_MEMBER_BYTES"):
        list(iter_conversations(path, settings=small))


def test_custom_instructions_repeated_in_every_conversation_are_kept_once(tmp_path: Path) -> None:
    convs = _export(3)
    for conv in convs:
        conv["mapping"]["ctx"] = {
            "id": "ctx",
            "parent": None,
            "message": {
                "author": {"role": "system"},
                "content": {
                    "content_type": "user_editable_context",
                    "user_profile": "I am a nurse.",
                },
                "metadata": {"is_visually_hidden_from_conversation": True},
            },
        }
        conv["mapping"]["u"]["parent"] = "ctx"
    path = tmp_path / "e.json"
    path.write_text(json.dumps(convs))
    signals = [s for c in iter_conversations(path, settings=SETTINGS) for s in c.signals]
    assert [(s.kind, s.conversation_id) for s in signals] == [("custom_instructions", "c0")]


# --- the bad-input corpus ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BadCase]:
    return {c.name: c for c in make_bad_exports(tmp_path_factory.mktemp("bad"))}


CORPUS_NAMES = [
    "not_json.json", "html_page.json", "empty_file.json", "truncated.json", "empty_list.json",
    "wrong_format.json", "object_without_list.json", "invalid_utf8.json", "utf16.json",
    "no_mapping.json", "cyclic_parent_chain.json", "dangling_parent_chain.json",
    "all_unreadable.json", "huge_message.json", "zip_without_conversations.zip", "damaged.zip",
    "zip_bomb.zip", "gzip_bomb.json.gz", "truncated.json.gz",
]  # fmt: skip


def test_corpus_list_is_complete(corpus: dict[str, BadCase]) -> None:
    assert sorted(corpus) == sorted(CORPUS_NAMES)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_bad_input_gets_a_clear_error_or_is_contained(
    corpus: dict[str, BadCase], name: str
) -> None:
    case = corpus[name]
    if case.expect is None:
        conversations = list(iter_conversations(case.path, settings=SETTINGS))
        assert conversations
        assert all(c.messages for c in conversations)
        return
    with pytest.raises(BadExport) as info:
        list(iter_conversations(case.path, settings=SETTINGS))
    assert case.expect in info.value.message
    assert len(info.value.message) < 500  # fits full_pass_error


def test_huge_message_is_truncated_not_fatal(corpus: dict[str, BadCase]) -> None:
    (conv,) = iter_conversations(corpus["huge_message.json"].path, settings=SETTINGS)
    (message,) = conv.messages
    assert len(message.text) <= SETTINGS.max_message_chars
    assert "characters omitted" in message.text


def test_dangling_parent_keeps_the_readable_part(corpus: dict[str, BadCase]) -> None:
    (conv,) = iter_conversations(corpus["dangling_parent_chain.json"].path, settings=SETTINGS)
    assert [m.text for m in conv.messages] == ["I am a nurse.", "Noted."]


def test_all_unreadable_names_each_reason(corpus: dict[str, BadCase]) -> None:
    with pytest.raises(BadExport, match=r"1 cyclic parent chain, 1 no mapping"):
        list(iter_conversations(corpus["all_unreadable.json"].path, settings=SETTINGS))
