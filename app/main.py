"""The composition root: `create_app(settings)` builds every client once, in the lifespan, hands
them to routes and the runner as typed state, and closes them on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI

from app.alerts import Alerter
from app.api.deps import Services
from app.api.handlers import BodySizeLimitMiddleware, install_error_handlers
from app.api.operator_routes import router as operator_router
from app.api.routes import router
from app.breaker import GuardedLLM, ProviderBreaker
from app.config import Settings, get_settings
from app.errors import ConfigError
from app.jobs import JobRunner
from app.logging import RequestIdMiddleware, configure_logging
from app.mcp_server.http import mcp_sessions, mount_mcp
from app.metrics import MeteredLLM
from app.ops.routes import mount_ops
from app.ports import LLM, Store
from app.pricing import price_for_llm
from app.processors.context import Pipeline
from app.processors.request_fit import requests_over_limit

__all__ = [
    "build_guarded_llm",
    "build_llm",
    "build_runner",
    "build_store",
    "check_settings",
    "create_app",
    "default_pipelines",
]

log = structlog.get_logger(__name__)


def check_settings(settings: Settings, *, serving: bool = True) -> None:
    """Refuse to start in a configuration that would be unsafe or cannot work, and say why.

    A worker process (`serving=False`) answers no HTTP, so it needs no API key.
    """
    if settings.uses_supabase:
        if not settings.supabase_url or settings.supabase_service_key is None:
            raise ConfigError(
                "the Supabase store needs SUPABASE_URL and SUPABASE_SERVICE_KEY; unset "
                "SUPABASE_URL to use the local store"
            )
        if serving and settings.rlm_api_key is None and not settings.allow_unauthenticated:
            raise ConfigError(
                "RLM_API_KEY is not set: with the Supabase store the API would be open to anyone. "
                "Set RLM_API_KEY (the frontend's shared secret), or ALLOW_UNAUTHENTICATED=true "
                "if something else guards the service"
            )
    if settings.llm_backend == "anthropic" and settings.anthropic_api_key is None:
        raise ConfigError("LLM_BACKEND=anthropic needs ANTHROPIC_API_KEY")
    # A request larger than the per-minute limit is refused every time: say so now, not at a
    # job's first such request (app/processors/request_fit.py). Offline, nothing is sent.
    if settings.uses_anthropic and (problems := requests_over_limit(settings)):
        raise ConfigError("; ".join(problems))


def build_store(settings: Settings) -> Store:
    if settings.uses_supabase:
        from app.adapters.supabase_store import SupabaseStore

        return SupabaseStore.from_settings(settings)
    from app.adapters.local_store import LocalStore

    return LocalStore(settings.local_data_dir)


def build_llm(settings: Settings) -> LLM:
    # Imported here: the offline default should not pay for loading the Anthropic SDK.
    if settings.uses_anthropic:
        from app.adapters.anthropic_llm import AnthropicLLM

        return AnthropicLLM.from_settings(settings)
    from app.adapters.offline_llm import OfflineLLM

    return OfflineLLM()


def build_guarded_llm(settings: Settings, inner: LLM | None = None) -> GuardedLLM:
    """The LLM every job uses: the provider's (or `inner`), metered, behind the process's one
    provider breaker. Closing it stops the breaker's probes and closes the provider's client."""
    inner = inner or build_llm(settings)
    price = price_for_llm(settings, provider=inner.provider, model=inner.model)
    metered = MeteredLLM(inner, price=price)
    breaker = ProviderBreaker(
        provider=inner.provider,
        probe=metered.probe,
        probe_initial_s=settings.llm_probe_initial_seconds,
        probe_max_s=settings.llm_probe_max_seconds,
    )
    return GuardedLLM(metered, breaker)


def default_pipelines() -> dict[str, Pipeline]:
    from app.processors.pipeline import PIPELINES

    return dict(PIPELINES)


def build_runner(
    settings: Settings,
    *,
    store: Store,
    llm: LLM,
    http: httpx.AsyncClient,
    pipelines: Mapping[str, Pipeline] | None = None,
    alerts: bool = True,
) -> JobRunner:
    """The job runner, for the service, a worker process or a local run (`alerts=False`)."""
    webhook = settings.alert_webhook if alerts else None
    return JobRunner(
        store=store,
        llm=llm,
        settings=settings,
        pipelines=pipelines if pipelines is not None else default_pipelines(),
        alerter=Alerter(webhook_url=webhook.get_secret_value() if webhook else None, client=http),
        breaker=llm.breaker if isinstance(llm, GuardedLLM) else None,
    )


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    llm: LLM | None = None,
    pipelines: Mapping[str, Pipeline] | None = None,
) -> FastAPI:
    """Build the service. Tests pass their own settings (and may pass a store or an LLM)."""
    settings = settings or get_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    check_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            the_store = store or build_store(settings)
            if store is None:
                stack.push_async_callback(the_store.aclose)
            the_llm = build_guarded_llm(settings, llm)
            # A caller's own LLM is theirs to close; ours closes with its breaker.
            stack.push_async_callback(the_llm.breaker.aclose if llm else the_llm.aclose)
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
            runner: JobRunner | None = None
            if settings.run_worker:
                runner = build_runner(
                    settings, store=the_store, llm=the_llm, http=http, pipelines=pipelines
                )
            app.state.services = Services(
                settings=settings,
                store=the_store,
                llm=the_llm,
                runner=runner,
                breaker=the_llm.breaker,
            )
            log.info(
                "service.started",
                store=type(the_store).__name__,
                llm=the_llm.provider,
                model=the_llm.model,
                worker=runner is not None,
                auth=settings.rlm_api_key is not None,
                extraction_concurrency=settings.fact_extraction_concurrency,
            )
            if runner is not None:
                runner.start()
                stack.push_async_callback(runner.stop)
            # The MCP endpoint's session manager: started here, stopped before the runner.
            await stack.enter_async_context(mcp_sessions(app, app.state.services))
            yield
        log.info("service.stopped")

    app = FastAPI(
        title="soulprint-rlm",
        version="0.1.0",
        summary="Full-pass processing of AI chat-history exports into MEMORY and profile sections.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    mount_mcp(app)
    app.include_router(operator_router)
    mount_ops(app, settings)  # the ops page at /ops (issue 12)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app
