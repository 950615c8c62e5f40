"""Browser sign-in for the HTML pages (the status page, the OAuth start).

A browser cannot send the admin API's ``Authorization: Bearer`` header, so ``/login`` takes
the same platform JWT in a form and keeps it in a cookie: ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page makes the browser send it), ``Secure`` when the
request came over HTTPS or ``SYNCD_OAUTH_REDIRECT_URL`` (syncd's public address) is HTTPS,
``Path=/``, and expiring with the token. Nothing is kept on the server: every request checks
the token in the cookie exactly as the API checks a bearer token (signature, issuer,
audience, expiry), so a session ends when its token expires, and ``/logout`` clears it.

POSTs to ``/login`` and ``/logout`` from a page of another origin (an ``Origin`` header
naming another host) are refused.
"""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit

import jwt
from aiohttp import web

from daemon.http import state
from daemon.http.auth import AuthFailed, Forbidden, NotConfigured, Principal, TokenVerifier
from daemon.http.pages import Markup, html, page
from daemon.logs import get_logger

__all__ = ["SESSION_COOKIE", "VERIFIER", "Anonymous", "request_principal", "routes"]

log = get_logger("syncd.http")

SESSION_COOKIE = "syncd_session"
#: The token verifier of the app (shared with the admin API).
VERIFIER = web.AppKey("syncd.token_verifier", TokenVerifier)
_MAX_TOKEN = 8000
#: Why a browser was sent to sign in (``/login?reason=``): fixed texts, never echoed input.
REASONS = {"expired": "your sign-in has expired or is no longer valid; sign in again"}


class Anonymous(AuthFailed):
    """The request carries no token at all (a browser that has not signed in)."""


def request_principal(request: web.Request) -> Principal:
    """The principal of a request: its bearer token, else its session cookie.

    :class:`Anonymous` when there is neither; :class:`AuthFailed`, :class:`Forbidden` or
    :class:`NotConfigured` as the admin API raises them.
    """
    verifier = request.config_dict[VERIFIER]
    header = request.headers.get("Authorization")
    if header is not None:
        return verifier.principal(header)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        if not verifier.configured:
            raise NotConfigured("sign-in is not configured")
        raise Anonymous("sign in first")
    return verifier.principal(f"Bearer {cookie}")


def secure_cookies(request: web.Request) -> bool:
    """Whether cookies set on this request get the ``Secure`` attribute."""
    public = request.config_dict[state.SETTINGS].oauth_redirect_url
    return request.secure or public.lower().startswith("https://")


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in: ``/`` unless ``value`` is one."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in value):
        return "/"
    return value


def login_url(request: web.Request, *, reason: str | None = None) -> str:
    """``/login`` with this request's path as where to come back to."""
    extra = f"&reason={reason}" if reason in REASONS else ""
    return "/login?next=" + quote(request.path_qs, safe="") + extra


def cross_origin(request: web.Request) -> bool:
    """A POST sent by a page of another origin (its ``Origin`` names another host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != (request.host or "").lower()


def _form(next_path: str, message: str | None) -> Markup:
    note = (html('<p class="message bad">{m}</p>', m=message) if message else Markup(""))
    return html(
        '<section><h2>Sign in</h2>{note}'
        "<p>Paste a token the platform issued you (the JWT the admin API takes as "
        "<code>Authorization: Bearer</code>). It is kept in a cookie of this browser until "
        "it expires or you sign out.</p>"
        '<form class="login" method="post" action="/login">'
        '<input type="hidden" name="next" value="{next}">'
        '<label for="token">Token</label><br>'
        '<textarea id="token" name="token" required autocomplete="off" '
        'spellcheck="false"></textarea><br>'
        '<button type="submit">Sign in</button></form></section>',
        note=note, next=next_path)


async def login_form(request: web.Request) -> web.Response:
    return page("Sign in", _form(safe_next(request.query.get("next")),
                                 REASONS.get(request.query.get("reason", ""))))


async def login(request: web.Request) -> web.Response:
    if cross_origin(request):
        return page("Sign in", html('<p class="message bad">{m}</p>',
                                    m="a sign-in from another site is refused"), status=403)
    try:
        form = await request.post()
    except ValueError:
        form = None
    raw_token = form.get("token") if form is not None else None
    raw_next = form.get("next") if form is not None else None
    next_path = safe_next(raw_next if isinstance(raw_next, str) else None)
    token = raw_token.strip() if isinstance(raw_token, str) else ""
    if not token or len(token) > _MAX_TOKEN:
        return page("Sign in", _form(next_path, "paste a token to sign in"), status=400)
    verifier = request.config_dict[VERIFIER]
    try:
        principal = verifier.principal(f"Bearer {token}")
    except NotConfigured as exc:
        return page("Sign in", _form(next_path, str(exc)), status=503)
    except AuthFailed as exc:
        log.info("http.login_refused", reason=str(exc))
        return page("Sign in", _form(next_path, str(exc)), status=401)
    except Forbidden as exc:
        return page("Sign in", _form(next_path, str(exc)), status=403)
    response = web.Response(status=303, headers={"Location": next_path})
    response.set_cookie(SESSION_COOKIE, token, max_age=_lifetime(token), path="/",
                        httponly=True, samesite="Strict", secure=secure_cookies(request))
    log.info("http.login", subject=principal.subject,
             venues=None if principal.venues is None else len(principal.venues))
    return response


def _lifetime(token: str) -> int:
    """Seconds until the (verified) token expires: the cookie lasts no longer."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return max(1, int(float(claims["exp"]) - time.time()))


async def logout(request: web.Request) -> web.Response:
    if cross_origin(request):
        return page("Sign out", html('<p class="message bad">{m}</p>',
                                     m="a sign-out from another site is refused"), status=403)
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def routes() -> list[web.RouteDef]:
    return [web.get("/login", login_form), web.post("/login", login),
            web.post("/logout", logout)]
