"""hierarchical_reduce's answers: cached per request, and in batch mode one Message Batch a level.

Every answer is kept in the fact cache under its own version key (`reduce_version`), keyed by a
hash of the request (`reduce_key`: its category, facts and target), so a resumed job — realtime
or batch — pays nothing twice for a level already answered: the same facts give the same
requests. In batch mode a level's uncached requests go as one Message Batch, recorded on the job
like extraction's: a resumed job first reads the reduce batches an earlier attempt left (into
the cache), then asks only what the cache still lacks. An errored, expired or canceled request is
submitted again up to BATCH_MAX_RESUBMITS times, then left unanswered (its facts are kept as they
were, as realtime keeps a batch the model could not process).
"""

from __future__ import annotations

import hashlib

import structlog

from app.batch_port import BatchRequest, LLMBatch, MessageBatches
from app.domain import Fact, FactCategory
from app.ports import ReduceRequest, Store
from app.processors.batch_jobs import JobBatches, Lost, Submission
from app.processors.composing.reduce import STEP, Answers, Asker, realtime_asker
from app.processors.context import JobContext
from app.processors.ledger import CostLedger
from app.processors.prompts import PROMPT_VERSION

__all__ = ["reduce_asker", "reduce_key", "reduce_version"]

_log = structlog.get_logger(__name__)


def reduce_version(provider: str, model: str) -> str:
    return f"reduce-{PROMPT_VERSION}/{provider}:{model}"


def reduce_key(request: ReduceRequest) -> str:
    """`reduce:<category>:<sha256 of the request>`: the category rides in the key so whichever
    process reads a batch's result can file its sentences."""
    digest = hashlib.sha256(f"{request.target_count}\x00".encode())
    for fact in request.facts:
        digest.update(fact.encode() + b"\x01")
    return f"reduce:{request.category.value}:{digest.hexdigest()}"


def _category(key: str) -> FactCategory:
    return FactCategory(key.split(":", 2)[1])


class _Cached:
    def __init__(self, *, store: Store, user_id: str, version: str, ledger: CostLedger) -> None:
        self.store, self.user_id, self.version, self.ledger = store, user_id, version, ledger

    async def get(self, keys: list[str]) -> dict[str, list[str]]:
        found = await self.store.get_cached_facts(
            user_id=self.user_id, extractor_version=self.version, content_hashes=keys
        )
        return {key: [f.text for f in facts] for key, facts in found.items()}

    async def put(self, answers: dict[str, list[str]]) -> None:
        if answers:
            entries = {
                key: [Fact(category=_category(key), text=t) for t in texts]
                for key, texts in answers.items()
            }
            await self.store.put_cached_facts(
                user_id=self.user_id, extractor_version=self.version, entries=entries
            )

    async def answer(self, requests: list[ReduceRequest], ask: Asker) -> Answers:
        keys = [reduce_key(r) for r in requests]
        known = await self.get(keys)
        self.ledger.record_cache_hits(STEP, sum(1 for k in keys if k in known))
        missing = [i for i, k in enumerate(keys) if k not in known]
        fresh = await ask([requests[i] for i in missing]) if missing else Answers([], 0)
        answered = {keys[i]: t for i, t in zip(missing, fresh.texts, strict=True) if t is not None}
        await self.put(answered)
        return Answers([known.get(k, answered.get(k)) for k in keys], fresh.calls)


class _BatchAsker:
    def __init__(self, jobs: JobBatches, cache: _Cached, *, max_resubmits: int) -> None:
        self.jobs, self.cache, self.max_resubmits = jobs, cache, max_resubmits

    async def _read(self, batches: list[LLMBatch]) -> tuple[dict[str, list[str]], int]:
        """Read ended batches into the cache; what they answered, and how many were billed."""
        got: dict[str, list[str]] = {}
        billed = 0
        async for ended in self.jobs.ended(batches):
            if isinstance(ended, Lost):
                continue  # its requests are asked again below
            async for result, keys in self.jobs.results(ended):
                if result.call is not None:
                    billed += 1
                    self.cache.ledger.record(STEP, result.call)
                if result.kind == "succeeded" and result.error is None:
                    assert isinstance(result.value, list)
                    got[keys[0]] = list(result.value)
                else:
                    why = result.error.code if result.error is not None else result.kind
                    self.cache.ledger.record_failure(STEP, f"{why}, in a batch")
            await self.cache.put(got)
            await self.jobs.mark_read(ended)
        return got, billed

    async def ask(self, requests: list[ReduceRequest]) -> Answers:
        got, billed = await self._read(await self.jobs.unread("reduce"))
        keys = [reduce_key(r) for r in requests]
        known = await self.cache.get([k for k in keys if k not in got])
        self.cache.ledger.record_cache_hits(STEP, len(known))
        got |= known
        missing = [i for i, k in enumerate(keys) if k not in got]
        tries = 0
        while missing and tries <= self.max_resubmits:
            tries += 1
            items = [
                Submission(BatchRequest(f"r{n:06d}", requests[i]), (keys[i],))
                for n, i in enumerate(missing)
            ]
            answered, paid = await self._read([await self.jobs.submit("reduce", items)])
            got |= answered
            billed += paid
            missing = [i for i in missing if keys[i] not in got]
        if missing:
            _log.warning("reduce.batch_unanswered", requests=len(missing))
        await self.jobs.note(None)
        return Answers([got.get(k) for k in keys], billed)


def reduce_asker(ctx: JobContext, ledger: CostLedger) -> Asker:
    """The pipeline's way to answer reduce requests: cached, through a Message Batch a level
    when LLM_MODE=batch (and the provider has batches), else through the Messages API."""
    llm, job, settings = ctx.llm, ctx.job, ctx.settings
    cache = _Cached(
        store=ctx.store,
        user_id=job.user_id,
        version=reduce_version(llm.provider, llm.model),
        ledger=ledger,
    )
    api: MessageBatches | None = llm.batches() if settings.llm_mode == "batch" else None
    if api is None:
        realtime = realtime_asker(llm, ledger)

        async def cached(requests: list[ReduceRequest]) -> Answers:
            return await cache.answer(requests, realtime)

        return cached
    jobs = JobBatches.of(ctx, api)
    return _BatchAsker(jobs, cache, max_resubmits=settings.batch_max_resubmits).ask
