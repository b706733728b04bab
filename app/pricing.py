"""USD prices per million tokens, by model, overridable from settings (FACTS.md: Anthropic API)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.config import Settings
from app.ports import LLMCall, LLMUsage

__all__ = [
    "BATCH_DISCOUNT",
    "OFFLINE_PRICE",
    "ModelPrice",
    "call_cost_usd",
    "cost_usd",
    "price_for",
    "price_for_llm",
]

# The Message Batches API bills input and output at half the realtime price (FACTS.md).
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input: float
    output: float
    cache_write: float
    cache_read: float


_HAIKU_4_5 = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10)
_TABLE: dict[str, ModelPrice] = {
    "claude-haiku-4-5": _HAIKU_4_5,
    "claude-haiku-4-5-20251001": _HAIKU_4_5,
}
# An unknown model is priced as Haiku 4.5 until settings say otherwise: better a labelled guess
# in the ledger than a zero that looks free.
_FALLBACK = _HAIKU_4_5
OFFLINE_PRICE = ModelPrice(input=0.0, output=0.0, cache_write=0.0, cache_read=0.0)


def price_for(settings: Settings, model: str | None = None) -> ModelPrice:
    base = _TABLE.get(model or settings.anthropic_model, _FALLBACK)
    overrides = {
        "input": settings.llm_price_input_per_mtok,
        "output": settings.llm_price_output_per_mtok,
        "cache_write": settings.llm_price_cache_write_per_mtok,
        "cache_read": settings.llm_price_cache_read_per_mtok,
    }
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def cost_usd(usage: LLMUsage, price: ModelPrice) -> float:
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_creation_input_tokens * price.cache_write
        + usage.cache_read_input_tokens * price.cache_read
    ) / 1_000_000


def call_cost_usd(call: LLMCall, price: ModelPrice) -> float:
    """What one call cost: at half price when it was answered through a Message Batch."""
    return cost_usd(call.usage, price) * (BATCH_DISCOUNT if call.batch else 1.0)


def price_for_llm(settings: Settings, *, provider: str, model: str) -> ModelPrice:
    """What an LLM's calls cost: the model's price for Anthropic, nothing for the offline rules."""
    return price_for(settings, model) if provider == "anthropic" else OFFLINE_PRICE
