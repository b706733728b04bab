"""Invalid settings, said for people: one line naming each variable, what it accepts, and the value
given (never a secret's). Pydantic's own report is a multi-line dump keyed by field names."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsError

__all__ = ["explain_invalid_settings"]

_KINDS: dict[Any, str] = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "text",
    Path: "a path",
    SecretStr: "text",
}
_SETTINGS_ERROR_FIELD = re.compile(r'field "([^"]+)"')
_MAX_VALUE_CHARS = 40


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _bounds(field: FieldInfo) -> str:
    limits: dict[str, float] = {}
    for rule in field.metadata:
        for kind in ("ge", "gt", "le", "lt"):
            if isinstance(rule, getattr(annotated_types, kind.capitalize())):
                limits[kind] = getattr(rule, kind)
    if "ge" in limits and "le" in limits:
        return f" from {limits['ge']:g} to {limits['le']:g}"
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    parts = [f"{words[kind]} {value:g}" for kind, value in limits.items()]
    return ", " + " and ".join(parts) if parts else ""


def _allowed(field: FieldInfo) -> str:
    annotation, optional = _unwrap_optional(field.annotation)
    if get_origin(annotation) is Literal:
        allowed = "one of " + ", ".join(str(choice) for choice in get_args(annotation))
    elif get_origin(annotation) is list:
        allowed = 'a JSON list, e.g. ["a","b"]'
    else:
        allowed = _KINDS.get(annotation, "a valid value") + _bounds(field)
    return allowed + (" (or empty for unset)" if optional else "")


def _is_secret(field: FieldInfo) -> bool:
    return _unwrap_optional(field.annotation)[0] is SecretStr


def _problem(name: str, fields: dict[str, FieldInfo], value: Any, *, known: bool) -> str:
    variable = name.upper()
    field = fields.get(name)
    if field is None:
        return f"{variable} is invalid"
    text = f"{variable} must be {_allowed(field)}"
    if known and not _is_secret(field):
        shown = str(value)
        if len(shown) > _MAX_VALUE_CHARS:
            shown = shown[: _MAX_VALUE_CHARS - 1] + "…"
        text += f", not {shown!r}"
    return text


def explain_invalid_settings(
    error: ValidationError | SettingsError, fields: dict[str, FieldInfo]
) -> str:
    """`"invalid setting: LEASE_SECONDS must be an integer, at least 1, not 'abc'; ..."`."""
    problems: list[str] = []
    if isinstance(error, ValidationError):
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else ""
            problem = _problem(name, fields, item.get("input"), known="input" in item)
            if problem not in problems:
                problems.append(problem)
    else:
        match = _SETTINGS_ERROR_FIELD.search(str(error))
        problems.append(_problem(match[1] if match else "", fields, None, known=False))
    plural = "s" if len(problems) > 1 else ""
    return (
        f"invalid setting{plural}: {'; '.join(problems)} (set in the environment or .env; "
        "see .env.example)"
    )
