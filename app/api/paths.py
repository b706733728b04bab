"""Validation of `storage_path` (DESIGN §5): `<bucket>/<user_id>/<file>` in the user's folder."""

from __future__ import annotations

from collections.abc import Sequence

from app.errors import ValidationFailed

__all__ = ["validate_storage_path"]


def validate_storage_path(path: str, *, user_id: str, allowed_buckets: Sequence[str]) -> str:
    """Return the path if it names a file in the user's own folder of an allowed bucket."""

    def reject(reason: str) -> ValidationFailed:
        return ValidationFailed(f"storage_path {reason}", field="storage_path")

    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise reject("must be a relative '<bucket>/<user_id>/<file>' path")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise reject("must not contain empty, '.' or '..' segments")
    if len(parts) < 3:
        raise reject("must look like '<bucket>/<user_id>/<file>'")
    bucket, owner = parts[0], parts[1]
    if bucket not in allowed_buckets:
        raise reject(f"bucket {bucket!r} is not allowed (allowed: {', '.join(allowed_buckets)})")
    if owner.lower() != user_id.lower():
        raise reject("must be inside the user's own folder '<bucket>/<user_id>/'")
    return path
