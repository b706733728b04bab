"""The byte side of reading an export: which container it is (by magic bytes, not by name), which
members of a zip hold the conversations and in what order, and a reader that enforces the size
limits while ijson pulls bytes through it — a zip bomb or a lying header stops at the limit
instead of filling the disk or memory.
"""

from __future__ import annotations

import gzip
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, Protocol

from app.config import Settings
from app.errors import BadExport

__all__ = [
    "MAX_CONVERSATION_BYTES",
    "Container",
    "GuardedReader",
    "detect_container",
    "open_members",
]

Container = Literal["json", "gzip", "zip"]

# One conversation larger than this is refused rather than built in memory: the service has
# 512 MB, and one parsed conversation costs about twice its JSON size while it is being built.
MAX_CONVERSATION_BYTES = 64 * 1024 * 1024
# Below this many decompressed bytes the ratio is not checked (tiny files compress oddly).
_RATIO_FLOOR_BYTES = 1024 * 1024
_MAX_LEADING_WHITESPACE = 1024 * 1024
_MANIFEST_MAX_BYTES = 10 * 1024 * 1024
_SPLIT = re.compile(r"(?:^|/)conversations-(\d+)\.json$")
_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"


class _Stream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class GuardedReader:
    """A binary `read()` over one member that counts bytes and raises `BadExport` past a limit."""

    def __init__(self, opener: Callable[[], _Stream], *, name: str, limit: int) -> None:
        self._opener = opener
        self._raw = opener()
        self.name = name
        self.limit = limit
        self.bytes_read = 0
        self._item_start = 0
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            data = self._raw.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise BadExport(
                f"{self.name} is damaged and cannot be decompressed ({type(exc).__name__} after "
                f"{self.bytes_read:,} bytes). Download the export again and upload the new file."
            ) from None
        self.bytes_read += len(data)
        if self.bytes_read > self.limit:
            raise BadExport(
                f"{self.name} unpacks to more than {self.limit:,} bytes, over the limit for one "
                "export (or a suspicious compression ratio, as in a zip bomb). Upload the "
                "original ChatGPT or Claude.ai export; if it really is this large, raise "
                "MAX_ZIP_MEMBER_BYTES."
            )
        if self.bytes_read - self._item_start > MAX_CONVERSATION_BYTES:
            raise BadExport(
                f"One conversation in {self.name} is larger than "
                f"{MAX_CONVERSATION_BYTES // 2**20} MB, which cannot be processed. Delete that "
                "conversation (or the huge file pasted into it) and export again."
            )
        return data

    def mark_item(self) -> None:
        """A conversation ended here: the per-conversation size limit starts counting again."""
        self._item_start = self.bytes_read

    def first_char(self) -> bytes:
        """The first significant byte (`[` or `{`), left unread for the parser; else `BadExport`."""
        head = b""
        while self.bytes_read < _MAX_LEADING_WHITESPACE:
            block = self.read(64 * 1024)
            if not block:
                break
            head = (head + block).removeprefix(_UTF8_BOM).lstrip(_WHITESPACE)
            if head:
                break
        self._pending = head + self._pending
        if head[:1] in (b"[", b"{"):
            return head[:1]
        raise BadExport(_not_json(self.name, head))

    def reopen(self) -> GuardedReader:
        return GuardedReader(self._opener, name=self.name, limit=self.limit)

    def close(self) -> None:
        self._raw.close()


def detect_container(path: Path, *, settings: Settings) -> Container:
    if not path.is_file():
        raise BadExport(f"The export file {path.name} does not exist or is not a file.")
    size = path.stat().st_size
    if size == 0:
        raise BadExport(
            "The export file is empty (0 bytes). Upload the file from your data export."
        )
    if size > settings.max_export_bytes:
        raise BadExport(
            f"The export is {size:,} bytes, over the {settings.max_export_bytes:,}-byte limit. "
            "Upload the zip from the export (it is smaller), or ask us to raise MAX_EXPORT_BYTES."
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic[:2] == b"PK":
        return "zip"
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    return "json"


def open_members(
    path: Path, *, container: Container, settings: Settings
) -> Iterator[tuple[str, GuardedReader]]:
    """(name, reader) for each JSON document holding conversations, in order; each is closed
    when the consumer moves on (or stops early)."""
    if container == "json":
        readers = [
            GuardedReader(lambda: path.open("rb"), name=path.name, limit=settings.max_export_bytes)
        ]
        yield from _each(readers)
        return
    if container == "gzip":
        limit = _ratio_limit(path.stat().st_size, settings)
        opener = lambda: gzip.open(path, "rb")  # noqa: E731, SIM115 - closed by _each
        yield from _each([GuardedReader(opener, name=path.name, limit=limit)])
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise BadExport(
            "The zip file is damaged (its table of contents cannot be read), perhaps cut short "
            "during upload. Upload the complete zip again."
        ) from None
    with archive:
        for info in _conversation_members(archive):
            _check_member(info, settings)
            limit = min(_ratio_limit(info.compress_size, settings), info.file_size)
            reader = GuardedReader(
                _member_opener(archive, info), name=info.filename, limit=max(limit, 1)
            )
            yield from _each([reader])


def _member_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], _Stream]:
    return lambda: archive.open(info)


def _each(readers: list[GuardedReader]) -> Iterator[tuple[str, GuardedReader]]:
    for reader in readers:
        try:
            yield reader.name, reader
        finally:
            reader.close()


def _ratio_limit(compressed: int, settings: Settings) -> int:
    return min(
        settings.max_zip_member_bytes,
        max(compressed * settings.max_zip_ratio, _RATIO_FLOOR_BYTES),
    )


def _conversation_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    files = [info for info in archive.infolist() if not info.is_dir()]
    single = [i for i in files if i.filename.rsplit("/", 1)[-1] == "conversations.json"]
    if single:
        return [min(single, key=lambda i: i.filename.count("/"))]
    split = {i.filename: i for i in files if _SPLIT.search(i.filename)}
    if not split:
        names = ", ".join(i.filename for i in files[:6]) or "nothing"
        raise BadExport(
            "The zip has no conversations.json (nor conversations-000.json, …): it contains "
            f"{names}. Upload the zip exactly as ChatGPT or Claude.ai sent it."
        )
    ordered = sorted(split, key=lambda n: int(_SPLIT.search(n).group(1)))  # type: ignore[union-attr]
    manifest = [i for i in files if i.filename.rsplit("/", 1)[-1] == "export_manifest.json"]
    if manifest:
        ordered = _manifest_order(archive, manifest[0], ordered)
    return [split[name] for name in ordered]


def _manifest_order(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, ordered: list[str]
) -> list[str]:
    """The manifest's order of the split files when it names exactly the ones present; the
    numeric order otherwise (its schema is not documented, so we only look for the names)."""
    if info.file_size > _MANIFEST_MAX_BYTES:
        return ordered
    try:
        text = archive.read(info).decode("utf-8")
        json.loads(text)
    except (ValueError, zipfile.BadZipFile, zlib.error, OSError):
        return ordered
    by_base = {name.rsplit("/", 1)[-1]: name for name in ordered}
    listed: list[str] = []
    for match in re.finditer(r"conversations-\d+\.json", text):
        name = by_base.get(match.group(0))
        if name and name not in listed:
            listed.append(name)
    return listed if sorted(listed) == sorted(ordered) else ordered


_COMPRESSIONS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


def _check_member(info: zipfile.ZipInfo, settings: Settings) -> None:
    if info.compress_type not in _COMPRESSIONS:
        raise BadExport(
            f"{info.filename} in the zip uses a compression method we cannot read "
            f"(#{info.compress_type}). Re-create the zip with standard (deflate) compression."
        )
    if info.flag_bits & 0x1:
        raise BadExport(
            f"{info.filename} in the zip is password-protected: upload an unencrypted export."
        )
    if info.file_size > settings.max_zip_member_bytes:
        raise BadExport(
            f"{info.filename} in the zip unpacks to {info.file_size:,} bytes, over the "
            f"{settings.max_zip_member_bytes:,}-byte limit (MAX_ZIP_MEMBER_BYTES)."
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > _RATIO_FLOOR_BYTES and ratio > settings.max_zip_ratio:
        raise BadExport(
            f"{info.filename} in the zip is compressed {ratio:,.0f}:1, far more than any real "
            f"export (limit {settings.max_zip_ratio}:1): this looks like a zip bomb, not an export."
        )


def _not_json(name: str, head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return (
            f"{name} is UTF-16 text; exports are UTF-8. Upload the original file, "
            "not a re-saved copy."
        )
    if head[:1] == b"<":
        return (
            f"{name} looks like HTML or XML, not JSON (an error page saved instead of the export?)."
        )
    if not head:
        return f"{name} is blank: no JSON in it. Upload the conversations.json from your export."
    return (
        f"{name} is not JSON, gzip or zip (it does not start with '[' or '{{'). Upload the "
        "conversations.json or the zip from your ChatGPT or Claude.ai data export."
    )
