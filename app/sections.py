"""The v2 sections (DESIGN §6): every field always present.

A string with no evidence is "not enough data"; a list with none is []. Models are lenient on
input (missing fields take the default) and strict on output (every field is always written).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "GENERIC_AI_NAMES",
    "NO_DATA",
    "AgentsSection",
    "IdentitySection",
    "SectionSet",
    "SoulSection",
    "ToolsSection",
    "UserSection",
]

NO_DATA = "not enough data"
GENERIC_AI_NAMES = frozenset(
    {"", "assistant", "ai", "bot", "helper", "chatbot", "ai assistant", "claude", "chatgpt", "gpt"}
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_empty(cls, data: Any) -> Any:
        """A null or blank field means "no evidence": let the default say so."""
        if not isinstance(data, dict):
            return data
        cleaned: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, list):
                value = [
                    str(item).strip() for item in value if item is not None and str(item).strip()
                ]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            cleaned[key] = value
        return cleaned


def _text() -> Any:
    return Field(default=NO_DATA)


def _items() -> Any:
    return Field(default_factory=list)


class SoulSection(_Section):
    communication_style: str = _text()
    personality_traits: list[str] = _items()
    tone_preferences: str = _text()
    boundaries: str = _text()
    humor_style: str = _text()
    formality_level: str = _text()
    emotional_patterns: str = _text()


class IdentitySection(_Section):
    ai_name: str = _text()
    archetype: str = _text()
    vibe: str = _text()
    emoji_style: str = _text()
    signature_greeting: str = _text()


class UserSection(_Section):
    name: str = _text()
    location: str = _text()
    occupation: str = _text()
    relationships: list[str] = _items()
    interests: list[str] = _items()
    life_context: str = _text()
    preferred_address: str = _text()


class AgentsSection(_Section):
    response_style: str = _text()
    behavioral_rules: list[str] = _items()
    context_adaptation: str = _text()
    memory_directives: str = _text()
    do_not: list[str] = _items()


class ToolsSection(_Section):
    likely_usage: list[str] = _items()
    capabilities_emphasis: list[str] = _items()
    output_preferences: str = _text()
    depth_preference: str = _text()


class SectionSet(BaseModel):
    model_config = ConfigDict(extra="ignore")

    soul: SoulSection = Field(default_factory=SoulSection)
    identity: IdentitySection = Field(default_factory=IdentitySection)
    user: UserSection = Field(default_factory=UserSection)
    agents: AgentsSection = Field(default_factory=AgentsSection)
    tools: ToolsSection = Field(default_factory=ToolsSection)
