"""``GET /oauth/{provider}/start`` and ``/oauth/{provider}/callback``: connect an integration
from a browser, through :class:`daemon.oauth.connect.OAuthService` (as ``syncd oauth url``
and ``syncd oauth complete`` do from a terminal).

``start?venue=ID`` needs a signed-in admin of the venue (a bearer token or the session cookie
of :mod:`daemon.http.session`; a browser without one is sent to sign in first). It stores a
single-use state (256 random bits, ten minutes, in Postgres), sets a cookie holding it
(``HttpOnly``, ``SameSite=Lax`` so that the provider's redirect back carries it, path
``/oauth/{provider}/``, ten minutes) and redirects to the provider's authorize address.

``callback`` refuses, with a page saying why and nothing stored, a callback whose state is not
the one this browser's cookie holds (a forged state, or a flow started by someone else: the
cookie binds the flow to the browser that started it), and, through the service, a state that
is unknown, used before, expired or for another provider, a denied consent, or a failed code
exchange. Otherwise the code is exchanged with the provider, the tokens are sealed by the
vault, the integration is marked connected and its first sync queued.
"""

from __future__ import annotations

import hmac
import uuid

import asyncpg
from aiohttp import web

from daemon.http import state
from daemon.http.auth import AuthFailed, Forbidden, NotConfigured
from daemon.http.pages import html, page
from daemon.http.session import Anonymous, login_url, request_principal, secure_cookies
from daemon.logs import get_logger
from daemon.oauth.app import OAuthError
from daemon.oauth.connect import STATE_TTL_SECONDS
from daemon.sql import queries

__all__ = ["STATE_COOKIE", "routes"]

log = get_logger("syncd.http")
_Q = queries("api.sql")

#: The cookie binding an OAuth flow to the browser that started it.
STATE_COOKIE = "syncd_oauth_state"
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _message(title: str, text: str, *, status: int, good: bool = False) -> web.Response:
    body = html('<div class="message {kind}"><h2>{title}</h2><p>{text}</p>'
                '<p><a href="/">Back to the status page</a></p></div>',
                kind="good" if good else "bad", title=title, text=text)
    return page(title, body, status=status)


def _cookie_path(provider: str) -> str:
    return f"/oauth/{provider}/"


async def start(request: web.Request) -> web.StreamResponse:
    """Send a venue's admin to the provider's consent page."""
    provider = request.match_info["provider"]
    try:
        principal = request_principal(request)
    except Anonymous:
        return web.Response(status=303, headers={"Location": login_url(request)})
    except NotConfigured as exc:
        return _message("Not available", str(exc), status=503)
    except AuthFailed:
        if "Authorization" in request.headers:
            return _message("Not signed in", "the token is not accepted", status=401)
        return web.Response(status=303,
                            headers={"Location": login_url(request, reason="expired")})
    except Forbidden as exc:
        return _message("Not allowed", str(exc), status=403)
    service = request.app[state.OAUTH]
    missing = _message("No such integration",
                       f"there is no {provider} integration for that venue", status=404)
    venue_text = request.query.get("venue", "")
    try:
        venue = uuid.UUID(venue_text)
    except ValueError:
        return missing
    if provider not in request.app[state.PROVIDERS] or not principal.may_see(venue):
        return missing
    if service is None:
        return _message("Not available", "connecting through OAuth is not configured on this "
                        "server (it needs the vault's encryption keys)", status=503)
    try:
        row = await request.app[state.POOL].fetchrow(_Q["integration"], venue, provider)
        if row is None:
            return missing
        authorize = await service.start(str(venue), provider,
                                        user=f"web:{principal.subject}"[:200])
    except OAuthError as exc:
        return _message("Cannot connect", str(exc), status=409)
    except _DB_ERRORS as exc:
        log.error("http.oauth_database_unavailable", error=type(exc).__name__)
        return _message("Try again", "the database is unavailable; try again", status=503)
    response = web.Response(status=303, headers={"Location": authorize.url})
    response.set_cookie(STATE_COOKIE, authorize.state, max_age=STATE_TTL_SECONDS,
                        path=_cookie_path(provider), httponly=True, samesite="Lax",
                        secure=secure_cookies(request))
    return response


async def callback(request: web.Request) -> web.Response:
    """Finish the connection the provider sent the browser back from."""
    provider = request.match_info["provider"]
    if provider not in request.app[state.PROVIDERS]:
        return _message("Not found", "no such provider", status=404)
    service = request.app[state.OAUTH]
    if service is None:
        return _message("Not available", "connecting through OAuth is not configured on this "
                        "server", status=503)
    nothing = "nothing was stored; start the connection again"
    given = request.query.get("state", "")
    bound = request.cookies.get(STATE_COOKIE, "")
    if not given:
        return _message("Not connected", f"the callback carries no state; {nothing}",
                        status=400)
    if not bound or not hmac.compare_digest(given.encode(), bound.encode()):
        log.info("http.oauth_unbound_callback", provider=provider, cookie=bool(bound))
        return _message("Not connected", "this connection was not started in this browser "
                        f"(or it took longer than ten minutes); {nothing}", status=400)
    params = {k: request.query[k] for k in request.query}
    try:
        done = await service.complete(provider, params)
    except OAuthError as exc:
        response = _message("Not connected", str(exc), status=400)
    except _DB_ERRORS as exc:
        log.error("http.oauth_database_unavailable", error=type(exc).__name__)
        return _message("Try again", "the database is unavailable; nothing was stored",
                        status=503)
    else:
        account = f" (account {done.account_id})" if done.account_id else ""
        queued = ("its first sync is queued" if done.job_id
                  else "its first sync joined one already queued")
        response = _message("Connected", f"{done.provider} is connected for venue "
                            f"{done.venue_id}{account}; {queued}.", status=200, good=True)
    # The state is spent either way (the service takes it once): the cookie goes too.
    response.del_cookie(STATE_COOKIE, path=_cookie_path(provider))
    return response


def routes() -> list[web.RouteDef]:
    return [web.get("/oauth/{provider}/start", start),
            web.get("/oauth/{provider}/callback", callback)]
