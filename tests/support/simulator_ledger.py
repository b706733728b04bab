"""What the simulator answered and what it would have billed, by mode.

Realtime (`POST /v1/messages`) keys stay at the top level, as benchmarks read them:
`requests` (every request, any outcome), `by_outcome`, `by_task` (requests answered with a body,
i.e. billed), `by_task_outcome` ({task: {outcome: n}}, every request whose task was recovered),
`input_tokens` / `output_tokens` (billed). `batch` holds the Message Batches side: `batches`
created, `requests` submitted, `by_result` (succeeded / errored / canceled / expired), `by_task`
and tokens of the succeeded requests only (the only ones billed, at half price).
`answered_more_than_once` counts inputs answered again in either mode: work paid for twice.
Extraction requests carry several excerpts (packed): `excerpts` counts the excerpts answered
(billed), `excerpts_answered_more_than_once` those answered again, whatever request they rode in.
`storms` lists the storm windows (see simulator_storms).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Ledger"]


@dataclass(frozen=True)
class Answer:
    """A reply the responder produced: the API's message object and what it counts as."""

    task: str
    message: dict[str, Any]
    input_tokens: int
    output_tokens: int
    user_text: str

    @property
    def input_key(self) -> str:
        return hashlib.sha256(self.user_text.encode()).hexdigest()[:16]

    def excerpt_keys(self) -> list[str]:
        """One key per excerpt of an extraction request (its text as the model reads it)."""
        if self.task != "extract_facts":
            return []
        from app.processors import prompts

        try:
            request = prompts.parse_extraction_input(self.user_text)
        except ValueError:
            return []
        bodies = (e.text + "\x00".join(s.text for s in e.signals) for e in request.excerpts)
        return [hashlib.sha256(body.encode()).hexdigest()[:16] for body in bodies]


@dataclass
class _Mode:
    requests: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_task: Counter[str] = field(default_factory=Counter)
    by_task_outcome: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    input_tokens: int = 0
    output_tokens: int = 0


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._realtime = _Mode()
            self._batch = _Mode()
            self._batches = 0
            self._by_input: Counter[str] = Counter()
            self._by_excerpt: Counter[str] = Counter()
            self._most_excerpts = 0

    def realtime(
        self, outcome: str, *, task: str | None = None, answer: Answer | None = None
    ) -> None:
        with self._lock:
            self._realtime.requests += 1
            self._count(self._realtime, outcome, task, answer)

    def batch_created(self, requests: int) -> None:
        with self._lock:
            self._batches += 1
            self._batch.requests += requests

    def batch_result(self, result: str, *, task: str | None, answer: Answer | None) -> None:
        with self._lock:
            self._count(self._batch, result, task, answer if result == "succeeded" else None)

    def snapshot(self, storms: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            rt, b = self._realtime, self._batch
            return {
                "requests": rt.requests,
                "by_outcome": dict(rt.by_outcome),
                "by_task": dict(rt.by_task),
                "by_task_outcome": {t: dict(c) for t, c in rt.by_task_outcome.items()},
                "answered_more_than_once": sum(n - 1 for n in self._by_input.values() if n > 1),
                "excerpts": sum(self._by_excerpt.values()),
                "max_excerpts_per_request": self._most_excerpts,
                "excerpts_answered_more_than_once": sum(
                    n - 1 for n in self._by_excerpt.values() if n > 1
                ),
                "input_tokens": rt.input_tokens,
                "output_tokens": rt.output_tokens,
                "batch": {
                    "batches": self._batches,
                    "requests": b.requests,
                    "by_result": dict(b.by_outcome),
                    "by_task": dict(b.by_task),
                    "input_tokens": b.input_tokens,
                    "output_tokens": b.output_tokens,
                },
                "storms": storms,
            }

    def _count(self, mode: _Mode, outcome: str, task: str | None, answer: Answer | None) -> None:
        mode.by_outcome[outcome] += 1
        if task is not None:
            mode.by_task_outcome[task][outcome] += 1
        if answer is not None:
            mode.by_task[answer.task] += 1
            mode.input_tokens += answer.input_tokens
            mode.output_tokens += answer.output_tokens
            self._by_input[answer.input_key] += 1
            keys = answer.excerpt_keys()
            self._by_excerpt.update(keys)
            self._most_excerpts = max(self._most_excerpts, len(keys))
