"""Who gets in to /ops: sign-in with the shared secret, a signed session cookie, CSRF on every
POST, the API's header auth untouched, and the keyless page open on this machine only."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.adapters.local_store import LocalStore
from app.config import Settings
from app.domain import JobStatus
from app.main import create_app
from app.ops.session import COOKIE_NAME
from tests.conftest import API_KEY, auth, make_settings
from tests.ops.conftest import LOCAL, csrf_of, ops_client, sign_in
from tests.ops.seeds import failed_job


async def test_pages_send_strangers_to_sign_in_and_back(
    settings: Settings, local_store: LocalStore
) -> None:
    job = await failed_job(local_store)
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        first = await http.get(f"/ops/jobs/{job.id}")
        assert first.status_code == 303
        assert first.headers["location"] == f"/ops/login?next=%2Fops%2Fjobs%2F{job.id}"
        form = await http.get(first.headers["location"])
        assert form.status_code == 200
        assert f'name="next" value="/ops/jobs/{job.id}"' in form.text

        elsewhere = await http.post(
            "/ops/login", data={"key": API_KEY}, headers={"Origin": "https://evil.test"}
        )
        assert elsewhere.status_code == 403
        assert COOKIE_NAME not in http.cookies
        refused = await sign_in(http, "not-the-key", next=f"/ops/jobs/{job.id}")
        assert refused.status_code == 401
        assert "not the service's key" in refused.text
        assert COOKIE_NAME not in http.cookies

        signed = await sign_in(http, API_KEY, next=f"/ops/jobs/{job.id}")
        assert signed.status_code == 303
        assert signed.headers["location"] == f"/ops/jobs/{job.id}"
        cookie = signed.headers["set-cookie"].lower()
        for attribute in ("httponly", "samesite=strict", "path=/ops", "max-age=43200"):
            assert attribute in cookie
        page = await http.get(f"/ops/jobs/{job.id}")
        assert page.status_code == 200
        assert "12 of 40 chunks could not be extracted" in page.text


@pytest.mark.parametrize("target", ["//evil.test/x", "https://evil.test/", "/jobs/1", "/ops\\x"])
async def test_sign_in_never_sends_you_off_the_page(
    settings: Settings, local_store: LocalStore, target: str
) -> None:
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        signed = await sign_in(http, API_KEY, next=target)
    assert signed.headers["location"] == "/ops"


async def test_a_forged_or_altered_cookie_is_no_session(
    settings: Settings, local_store: LocalStore
) -> None:
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        await sign_in(http, API_KEY)
        good = http.cookies[COOKIE_NAME]
        version, sid, expires, signature = good.split(".")
        for bad in (
            f"{version}.{sid}.{int(expires) + 3600}.{signature}",  # a longer life
            f"{version}.other{sid}.{expires}.{signature}",  # another session
            f"{version}.{sid}.{expires}.{signature[:-2]}AA",  # a guessed signature
        ):
            http.cookies.set(COOKIE_NAME, bad, domain="127.0.0.1", path="/ops")
            assert (await http.get("/ops")).status_code == 303, bad
        http.cookies.set(COOKIE_NAME, good, domain="127.0.0.1", path="/ops")
        assert (await http.get("/ops")).status_code == 200


async def test_another_key_signs_nothing_here(tmp_path: Path, local_store: LocalStore) -> None:
    """A cookie signed under another RLM_API_KEY (before a rotation) is refused."""
    old = create_app(make_settings(tmp_path, rlm_api_key="the-old-key"), store=local_store)
    async with ops_client(old) as http:
        await sign_in(http, "the-old-key")
        cookie = http.cookies[COOKIE_NAME]
    new = create_app(make_settings(tmp_path), store=local_store, pipelines={})
    async with ops_client(new) as http:
        http.cookies.set(COOKIE_NAME, cookie, domain="127.0.0.1", path="/ops")
        assert (await http.get("/ops")).status_code == 303


async def test_every_post_needs_the_pages_csrf_token(
    settings: Settings, local_store: LocalStore
) -> None:
    job = await failed_job(local_store)
    app = create_app(settings, store=local_store, pipelines={})
    async with ops_client(app) as other:  # another signed-in browser: its token is not ours
        await sign_in(other, API_KEY)
        foreign = csrf_of(await other.get("/ops"))
    async with ops_client(app) as http:
        await sign_in(http, API_KEY)
        token = csrf_of(await http.get("/ops"))
        retry = f"/ops/jobs/{job.id}/retry"
        for data in ({}, {"csrf": ""}, {"csrf": foreign}, {"csrf": token[:-1] + "x"}):
            refused = await http.post(retry, data=data)
            assert refused.status_code == 403, data
            assert "did not come from this page" in refused.text
        cross_site = await http.post(
            retry, data={"csrf": token}, headers={"Origin": "http://evil.test"}
        )
        assert cross_site.status_code == 403
        still = await local_store.get_job(job.id)
        assert still is not None
        assert still.status is JobStatus.FAILED

        done = await http.post(retry, data={"csrf": token}, headers={"Origin": LOCAL})
        assert done.status_code == 303
        assert done.headers["location"] == f"/ops/jobs/{job.id}?notice=requeued"
    requeued = await local_store.get_job(job.id)
    assert requeued is not None
    assert requeued.status is JobStatus.QUEUED
    events = await local_store.list_job_events(job.id)
    assert (events[-1].kind, events[-1].worker_id) == ("requeued", "operator:ops")


async def test_sign_out_ends_the_session_and_needs_its_token(
    settings: Settings, local_store: LocalStore
) -> None:
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        await sign_in(http, API_KEY)
        token = csrf_of(await http.get("/ops"))
        assert (await http.post("/ops/logout")).status_code == 403
        out = await http.post("/ops/logout", data={"csrf": token})
        assert out.status_code == 303
        assert out.headers["location"] == "/ops/login"
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert COOKIE_NAME not in http.cookies
        assert (await http.get("/ops")).status_code == 303


async def test_the_api_still_wants_its_header_and_the_cookie_is_not_it(
    settings: Settings, local_store: LocalStore
) -> None:
    job = await failed_job(local_store)
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        await sign_in(http, API_KEY)
        assert (await http.get(f"/jobs/{job.id}")).status_code == 401
        assert (await http.post(f"/jobs/{job.id}/retry")).status_code == 401
        assert (await http.get(f"/jobs/{job.id}", headers=auth())).status_code == 200


# --- no key: open on this machine only ------------------------------------------------------


@pytest.fixture
def keyless(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, rlm_api_key=None)


async def test_without_a_key_the_page_is_open_here_with_a_session_for_its_forms(
    keyless: Settings, local_store: LocalStore
) -> None:
    job = await failed_job(local_store)
    async with ops_client(create_app(keyless, store=local_store, pipelines={})) as http:
        assert (await http.post(f"/ops/jobs/{job.id}/retry", data={"csrf": "x"})).status_code == (
            403
        )
        page = await http.get("/ops")
        assert page.status_code == 200
        assert "open on this machine only" in page.text
        assert "httponly" in page.headers["set-cookie"].lower()
        assert (await http.get("/ops/login")).headers["location"] == "/ops"
        done = await http.post(f"/ops/jobs/{job.id}/retry", data={"csrf": csrf_of(page)})
        assert done.status_code == 303


@pytest.mark.parametrize(
    ("base_url", "client"),
    [
        ("http://attacker.example:8000", ("127.0.0.1", 50123)),  # DNS rebinding: a foreign Host
        ("http://soulprint.internal", ("127.0.0.1", 50123)),
        (LOCAL, ("203.0.113.7", 40000)),  # another machine
        ("http://[::1]:8000", ("10.1.2.3", 40000)),
    ],
)
async def test_without_a_key_other_hosts_and_machines_are_refused(
    keyless: Settings, local_store: LocalStore, base_url: str, client: tuple[str, int]
) -> None:
    app = create_app(keyless, store=local_store, pipelines={})
    async with ops_client(app, base_url=base_url, client=client) as http:
        refused = await http.get("/ops")
    assert refused.status_code == 403
    assert "only on this machine" in refused.text
    assert "set-cookie" not in refused.headers


@pytest.mark.parametrize("base_url", ["http://localhost:8000", "http://[::1]:8000"])
async def test_without_a_key_every_loopback_name_is_this_machine(
    keyless: Settings, local_store: LocalStore, base_url: str
) -> None:
    app = create_app(keyless, store=local_store, pipelines={})
    async with ops_client(app, base_url=base_url, client=("::1", 40000)) as http:
        assert (await http.get("/ops")).status_code == 200


async def test_allow_unauthenticated_opens_the_page_like_the_api(
    tmp_path: Path, local_store: LocalStore
) -> None:
    settings = make_settings(tmp_path, rlm_api_key=None, allow_unauthenticated=True)
    app = create_app(settings, store=local_store, pipelines={})
    async with ops_client(app, base_url="http://ops.example", client=("198.51.100.2", 1)) as http:
        assert (await http.get("/ops")).status_code == 200


async def test_pages_carry_a_strict_policy_and_are_not_in_the_api_schema(
    settings: Settings, local_store: LocalStore
) -> None:
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        page = await http.get("/ops/login")
        schema = (await http.get("/openapi.json")).json()
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert not [path for path in schema["paths"] if path.startswith("/ops")]


async def test_static_files_are_served_by_the_app(
    settings: Settings, local_store: LocalStore
) -> None:
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        for name, kind in [
            ("ops.css", "text/css"),
            ("ops.js", "javascript"),
            ("favicon.svg", "svg"),
        ]:
            response = await http.get(f"/ops/static/{name}")
            assert response.status_code == 200
            assert kind in response.headers["content-type"]
        assert (await http.get("/ops/static/../templates/base.html")).status_code == 404
