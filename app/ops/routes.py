"""The ops page's routes: the overview, a job's page, sign-in and sign-out, and the two actions
(retry one failed job, retry the failed jobs since a moment) — the same operations as
`POST /jobs/{id}/retry` and `POST /jobs/retry`. Not in the OpenAPI schema: pages, not API.

A POST answers with a redirect to a page (so a reload does not repeat it), except the bulk
retry, whose report is the answer. An expected failure is a page that says what to do.
"""

from __future__ import annotations

import hmac
import inspect
import uuid
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.api.deps import ServicesDep
from app.api.views import retry_failed_job
from app.bulk_retry import bulk_retry
from app.config import Settings
from app.errors import AppError, JobNotFound
from app.fleet import FailedJobQuery, parse_moment
from app.ops import views
from app.ops.access import (
    AccessMode,
    OpsDenied,
    OpsState,
    SignInNeeded,
    Viewer,
    check_origin,
    form_viewer,
    ops_state,
    page_viewer,
    safe_next,
)
from app.ops.pages import render, set_session_cookie
from app.ops.session import COOKIE_NAME, SessionSigner

__all__ = ["ACTOR", "mount_ops", "router"]

ACTOR = "operator:ops"
REFRESH_SECONDS = 5
# Fixed words for the notice a redirect asks for: nothing from the URL reaches the page.
_NOTICES = {"requeued": "Queued again: a worker takes it when one is free."}

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/ops", include_in_schema=False)

PageViewer = Annotated[Viewer, Depends(page_viewer)]
FormViewer = Annotated[Viewer, Depends(form_viewer)]


def _now() -> datetime:
    return datetime.now(UTC)


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


@router.get("", response_class=HTMLResponse)
async def overview_page(
    request: Request,
    viewer: PageViewer,
    services: ServicesDep,
    failed_offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> HTMLResponse:
    data = await views.overview(
        services.store, services.breaker, now=_now(), failed_offset=failed_offset
    )
    return render(request, "overview.html", viewer=viewer, refresh=REFRESH_SECONDS, page=data)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_detail(
    request: Request, job_id: str, viewer: PageViewer, services: ServicesDep, notice: str = ""
) -> HTMLResponse:
    data = await views.job_page(services.store, _job_id(job_id), now=_now())
    active = data.job.status.active
    return render(
        request,
        "job.html",
        viewer=viewer,
        refresh=REFRESH_SECONDS if active else 0,
        page=data,
        notice=_NOTICES.get(notice),
    )


@router.post("/jobs/{job_id}/retry")
async def retry_one(
    job_id: str,
    viewer: FormViewer,
    services: ServicesDep,
    back: Annotated[str, Form()] = "job",
) -> Response:
    job = await retry_failed_job(services.store, _job_id(job_id), actor=ACTOR)
    if back == "overview":
        return _redirect("/ops#failed")
    return _redirect(f"/ops/jobs/{job.id}?notice=requeued")


@router.post("/retry-failed", response_class=HTMLResponse)
async def retry_since(
    request: Request,
    viewer: FormViewer,
    services: ServicesDep,
    since: Annotated[str, Form(max_length=40)],
    error_contains: Annotated[str, Form(max_length=200)] = "",
    dry_run: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    query = FailedJobQuery(since=parse_moment(since), error_contains=error_contains or None)
    report = await bulk_retry(services.store, query, actor=ACTOR, dry_run=dry_run)
    return render(request, "retried.html", viewer=viewer, report=report, since=since)


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, next_path: Annotated[str, Query(alias="next", max_length=1024)] = "/ops"
) -> Response:
    if ops_state(request).mode is not AccessMode.SIGN_IN:
        return _redirect("/ops")
    return render(request, "login.html", viewer=None, next=safe_next(next_path), refused=False)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=1024)],
    next_path: Annotated[str, Form(alias="next", max_length=1024)] = "/ops",
) -> Response:
    state, settings = ops_state(request), request.app.state.services.settings
    expected = settings.rlm_api_key
    if state.mode is not AccessMode.SIGN_IN or expected is None:
        return _redirect("/ops")
    check_origin(request)  # no one signs you in from another site, even with the right key
    if not hmac.compare_digest(key.encode(), expected.get_secret_value().encode()):
        log.info("ops.sign_in_refused")
        return render(
            request,
            "login.html",
            viewer=None,
            status_code=401,
            next=safe_next(next_path),
            refused=True,
        )
    session, cookie = state.signer.issue()
    response = _redirect(safe_next(next_path))
    set_session_cookie(request, response, cookie, session.expires)
    log.info("ops.signed_in")
    return response


@router.post("/logout")
async def logout(viewer: FormViewer) -> Response:
    response = _redirect("/ops/login" if viewer.mode is AccessMode.SIGN_IN else "/ops")
    response.delete_cookie(COOKIE_NAME, path="/ops", httponly=True, samesite="strict")
    return response


def _job_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise JobNotFound(f"no job {raw[:40]!r}: a job id is a UUID") from None


def _error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    return render(request, "error.html", viewer=None, status_code=status_code, message=message)


async def _on_denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpsDenied)
    return _error_page(request, exc.status_code, exc.message)


async def _on_sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInNeeded)
    target = "/ops/login"
    if exc.next_path != "/ops":
        target += "?" + urlencode({"next": exc.next_path})
    return _redirect(target)


def mount_ops(app: FastAPI, settings: Settings) -> None:
    """The pages at /ops, their static files, and the handlers that answer their errors with a
    page (an `AppError` raised under /ops is a page too; elsewhere the JSON handler stands)."""
    app.state.ops = OpsState(AccessMode.of(settings), SessionSigner.for_settings(settings))
    app.include_router(router)
    app.mount("/ops/static", StaticFiles(packages=[("app.ops", "static")]), name="ops-static")
    app.add_exception_handler(OpsDenied, _on_denied)
    app.add_exception_handler(SignInNeeded, _on_sign_in)
    json_handler = app.exception_handlers[AppError]  # install_error_handlers ran first

    async def on_app_error(request: Request, exc: Exception) -> Response:
        if request.url.path == "/ops" or request.url.path.startswith("/ops/"):
            assert isinstance(exc, AppError)
            return _error_page(request, exc.status_code, exc.message)
        answer = json_handler(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(AppError, on_app_error)
