"""Forced tools: the JSON schema a structured reply must follow, named so a log reader (and the
simulator) can tell the task from the tool."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["STR", "STR_LIST", "Reply", "ToolSpec", "obj"]


class ToolSpec(BaseModel):
    """A forced tool: its name tells the simulator (and a reader of the logs) which task it is."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    input_schema: dict[str, Any]

    def param(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "strict": True,
        }


def obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


STR: dict[str, Any] = {"type": "string"}
STR_LIST: dict[str, Any] = {"type": "array", "items": STR}


class Reply(BaseModel):
    """Base of the reply models: unknown keys ignored, strings stripped."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
