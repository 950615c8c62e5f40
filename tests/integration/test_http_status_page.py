"""The status page at ``/`` as a person sees it, in headless Chromium (Debian's ``chromium``,
driven by Playwright): sign in, read venues, health, a failure, a dead letter and a pause; a
venue admin sees only their venue. A screenshot is kept under ``.artifacts/``.

Without /usr/bin/chromium these tests are skipped, except where ``CI`` is set: there they
fail, so that CI never passes without having looked at the page.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from tests.integration import webhook_support as ws

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts"
CHROMIUM = Path("/usr/bin/chromium")
SECRET = "status-page-secret-0123456789abcdef0123"
ISSUER = "https://platform.example"
AUDIENCE = "syncd"
API = {"api_jwt_secret": SECRET, "api_jwt_issuer": ISSUER, "api_jwt_audience": AUDIENCE}

LAUGH = uuid.UUID("1a2b3c4d-0000-4000-8000-0000000000a1")
THEATRE = uuid.UUID("1a2b3c4d-0000-4000-8000-0000000000b2")
HOURLY = {"customer": {"cron": "0 * * * *", "lane": "NORMAL", "direction": "push"}}


def token(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 900, **claims}, SECRET,
                      algorithm="HS256")


PLATFORM = {"role": "platform_admin", "sub": "ops@platform"}
THEATRE_ADMIN = {"role": "venue_admin", "sub": "box-office@oldtown", "venues": [str(THEATRE)]}


async def seed(pool: asyncpg.Pool) -> None:
    """Two venues: one with a healthy paused integration and an unhealthy one with a failed
    sync and a dead letter; the other with a healthy integration and a dead letter."""
    rows = [
        (LAUGH, "The Laugh Track", "square", "connected", "healthy", None, 0),
        (LAUGH, "The Laugh Track", "stripe", "error", "unhealthy",
         "Stripe answered 401: the API key was revoked", 4),
        (THEATRE, "Old Town Theatre", "mailchimp", "connected", "healthy", None, 0),
    ]
    for venue, name, provider, status, health, error, failures in rows:
        await pool.execute(
            "INSERT INTO integration_configs (venue_id, venue_name, provider, status, "
            "health_status, last_error, last_error_at, failure_count, last_sync_at, "
            "schedules, credentials) VALUES ($1, $2, $3, $4, $5, $6, "
            "CASE WHEN $6::text IS NULL THEN NULL ELSE now() - interval '5 minutes' END, $7, "
            "now() - interval '12 minutes', $8, $9)",
            venue, name, provider, status, health, error, failures, HOURLY,
            {"api_key": "env:KEY"})
    await pool.execute(
        "UPDATE integration_configs SET paused_at = now() - interval '1 hour', "
        "paused_by = 'api:ops@platform', pause_reason = 'card reader swap' "
        "WHERE venue_id = $1 AND provider = 'square'", LAUGH)
    errors = [{"entity": "customer", "local_id": f"buyer-{n}", "kind": "rejected",
               "error": "email address is invalid"} for n in range(7)]
    await pool.execute(
        "INSERT INTO sync_logs (venue_id, provider, operation, entity_type, status, "
        "success_count, error_count, duration_ms, details, errors, started_at, completed_at) "
        "VALUES ($1, 'stripe', 'sync', 'customer', 'partial', 41, 7, 3400, '{}', $2, "
        "now() - interval '20 minutes', now() - interval '20 minutes')",
        LAUGH, json.loads(json.dumps(errors)))
    await pool.execute(
        "INSERT INTO sync_logs (venue_id, provider, operation, status, duration_ms, details, "
        "started_at, completed_at) VALUES ($1, 'stripe', 'sync', 'failed', 800, $2, "
        "now() - interval '6 minutes', now() - interval '6 minutes')",
        LAUGH, {"error": "Stripe answered 401: the API key was revoked"})
    await pool.execute(
        "INSERT INTO sync_logs (venue_id, provider, operation, status, success_count, "
        "duration_ms, started_at, completed_at) VALUES ($1, 'mailchimp', 'sync', "
        "'completed', 12, 950, now() - interval '3 minutes', now() - interval '3 minutes')",
        THEATRE)
    for venue, provider, error in (
            (LAUGH, "stripe", "HTTP 500 from Stripe after 10 attempts"),
            (THEATRE, "mailchimp", "Mailchimp list a1b2c3 no longer exists")):
        await pool.execute(
            "INSERT INTO sync_queue (venue_id, provider, entity_type, status, attempts, "
            "last_error, completed_at) VALUES ($1, $2, 'customer', 'dead_letter', 10, $3, "
            "now() - interval '30 minutes')", venue, provider, error)
    for lane in ("HIGH", "NORMAL", "NORMAL"):
        await pool.execute(
            "INSERT INTO sync_queue (venue_id, provider, entity_type, lane) "
            "VALUES ($1, 'square', $2, $3)", LAUGH, f"e-{uuid.uuid4()}", lane)


@pytest.fixture
async def server(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[str]:
    await seed(pool)
    async with ws.running_app(pool, tmp_path, **API) as running:
        yield running.url


def _browser_driver() -> Any:
    """Playwright's ``async_playwright``, when it and Debian's Chromium are installed; else
    the test is skipped, or fails where ``CI`` is set."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install --no-install-recommends chromium)"
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing = missing or "playwright is not installed (pip install -e '.[test]')"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return async_playwright


async def test_an_operator_signs_in_and_reads_the_status_page(server: str) -> None:
    async_playwright = _browser_driver()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 900})
            page = await context.new_page()
            await page.goto(server + "/")
            assert page.url.startswith(server + "/login")
            await page.fill("textarea[name=token]", token(**PLATFORM))
            await page.click("button[type=submit]")
            await page.wait_for_url(server + "/")

            cookie = next(c for c in await context.cookies() if c["name"] == "syncd_session")
            assert cookie["httpOnly"]
            assert cookie["sameSite"] == "Strict"

            text = await page.inner_text("body")
            assert "ops@platform · platform admin" in text
            integrations = page.locator("#integrations")
            assert await integrations.locator("text=The Laugh Track").count() == 1
            assert await integrations.locator("text=Old Town Theatre").count() == 1
            square = page.locator(f'tr[data-venue="{LAUGH}"][data-provider="square"]')
            square_text = await square.inner_text()
            assert "paused" in square_text
            assert "card reader swap" in square_text
            assert "healthy" in square_text
            stripe = page.locator(f'tr[data-venue="{LAUGH}"][data-provider="stripe"]')
            stripe_text = await stripe.inner_text()
            assert "unhealthy" in stripe_text
            assert "Stripe answered 401: the API key was revoked" in stripe_text
            assert "4 failures in a row" in stripe_text

            lanes = await page.inner_text("#lanes")
            high = await page.inner_text('tr[data-lane="HIGH"]')
            # lane, due, later, held by a pause, running, dead letters
            assert high.split()[:6] == ["HIGH", "1", "0", "1", "0", "0"]
            normal = await page.inner_text('tr[data-lane="NORMAL"]')
            assert normal.split()[:6] == ["NORMAL", "2", "0", "2", "0", "2"]
            assert "HELD BY A PAUSE" in lanes  # as shown: headers are set in capitals

            syncs = await page.inner_text("#syncs")
            assert "customer buyer-0: email address is invalid" in syncs
            assert "and 2 more" in syncs
            dead = await page.inner_text("#dead-letters")
            assert "HTTP 500 from Stripe after 10 attempts" in dead
            assert "Mailchimp list a1b2c3 no longer exists" in dead

            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "status-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"status page screenshot: {shot}")
            assert shot.stat().st_size > 10_000
        finally:
            await browser.close()


async def test_a_venue_admin_sees_only_their_venue(server: str) -> None:
    async_playwright = _browser_driver()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page()
            await page.goto(server + "/login")
            await page.fill("textarea[name=token]", token(**THEATRE_ADMIN))
            await page.click("button[type=submit]")
            await page.wait_for_url(server + "/")
            text = await page.inner_text("body")
            assert "box-office@oldtown · venue admin of 1 venue" in text
            assert "Old Town Theatre" in text
            assert "Mailchimp list a1b2c3 no longer exists" in text
            for theirs in ("The Laugh Track", str(LAUGH), "card reader swap",
                           "HTTP 500 from Stripe", "email address is invalid",
                           "the API key was revoked"):
                assert theirs not in text, theirs
            # The Laugh Track's queued jobs are not counted in this admin's lanes.
            high = await page.inner_text('tr[data-lane="HIGH"]')
            assert high.split()[:2] == ["HIGH", "0"]

            await page.click("text=Sign out")
            await page.wait_for_url(server + "/login")
            await page.goto(server + "/")
            assert page.url.startswith(server + "/login")
        finally:
            await browser.close()


# --- the same page without a browser: redirects, the public setting, escaping ----------------


async def test_without_a_sign_in_the_page_sends_the_browser_to_the_form(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as http:
        first = await http.get("/")
        assert first.status_code == 303
        assert first.headers["Location"] == "/login?next=%2F"
        stale = await http.get("/", headers={"Cookie": "syncd_session=not.a.token"})
        assert stale.headers["Location"] == "/login?next=%2F&reason=expired"
        form = await http.get("/login?next=%2F&reason=expired")
        assert "your sign-in has expired" in form.text
        bearer = await http.get("/", headers={"Authorization": f"Bearer {token(**PLATFORM)}"})
        assert bearer.status_code == 200
        assert "The Laugh Track" in bearer.text
        assert bearer.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert '<meta http-equiv="refresh" content="15">' in bearer.text


@pytest.mark.parametrize(("form", "headers", "status", "says"), [
    ({"token": "not-a-jwt"}, {}, 401, "the token is malformed"),
    ({"token": ""}, {}, 400, "paste a token"),
    ({"token": "x"}, {"Origin": "https://evil.example"}, 403, "another site"),
])
async def test_a_refused_sign_in_sets_no_cookie(server: str, form: dict[str, str],
                                                headers: dict[str, str], status: int,
                                                says: str) -> None:
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post("/login", data=form, headers=headers)
        assert response.status_code == status
        assert says in response.text
        assert "syncd_session" not in response.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil",
                                    "javascript:alert(1)"])
async def test_signing_in_never_redirects_off_site(server: str, target: str) -> None:
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post("/login", data={"token": token(**PLATFORM),
                                                   "next": target})
        assert response.status_code == 303
        assert response.headers["Location"] == "/"


async def test_the_public_setting_shows_every_venue_without_a_sign_in(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    await seed(pool)
    async with ws.running_app(pool, tmp_path, http_status_public=True) as running, \
            httpx.AsyncClient(base_url=running.url) as http:
        response = await http.get("/")
        assert response.status_code == 200
        assert "public view" in response.text
        assert "The Laugh Track" in response.text
        assert "Old Town Theatre" in response.text
        api = await http.get("/api/v1/integrations")
        assert api.status_code == 503  # the API never becomes public


async def test_every_value_on_the_page_is_escaped(pool: asyncpg.Pool, tmp_path: Path) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    await pool.execute(
        "INSERT INTO integration_configs (venue_id, venue_name, provider, last_error, "
        "pause_reason, paused_at) VALUES ($1, $2, 'square', $2, $2, now())",
        uuid.uuid4(), evil)
    async with ws.running_app(pool, tmp_path, **API) as running, \
            httpx.AsyncClient(base_url=running.url) as http:
        response = await http.get("/", headers={"Authorization":
                                                f"Bearer {token(**PLATFORM)}"})
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "<img" not in response.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in response.text
