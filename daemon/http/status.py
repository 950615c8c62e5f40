"""``GET /``: the status page for operators, rendered on the server.

Integrations by venue (enabled, paused, connection, health, last sync, last error, queued
and running jobs), the queue's lanes (due, later, held by a pause, running, dead letters,
oldest due job), the latest syncs with their failures, dead letters and failed webhook
events. The page refreshes itself every :data:`REFRESH_SECONDS` with a meta refresh (no
script: its Content-Security-Policy allows none).

Who sees what follows the admin API: a signed-in platform admin (session cookie or bearer
token, :mod:`daemon.http.session`) sees every venue, a venue admin the venues in their token.
Without a sign-in the browser is sent to ``/login``, unless ``SYNCD_HTTP_STATUS_PUBLIC`` is
set, which shows every venue to anyone (a private network only).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from daemon.http import state
from daemon.http.auth import AuthFailed, Forbidden, NotConfigured, Principal
from daemon.http.pages import Markup, html, join, page
from daemon.http.session import Anonymous, login_url, request_principal
from daemon.logs import get_logger
from daemon.queue.types import LANES
from daemon.sql import queries

__all__ = ["REFRESH_SECONDS", "routes"]

log = get_logger("syncd.http")
_Q = queries("status.sql")

#: Seconds between the page's own refreshes.
REFRESH_SECONDS = 15
#: Most rows of each list on the page.
MAX_INTEGRATIONS = 500
MAX_SYNCS = 25
MAX_DEAD_LETTERS = 25
MAX_WEBHOOKS = 10
#: Per-record failures shown under one sync.
MAX_RECORD_ERRORS = 5
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_EMPTY = Markup("")


# --- small pieces --------------------------------------------------------------------------


def _when(value: datetime | None, now: datetime) -> Markup:
    """An absolute UTC time with how long ago it was."""
    if value is None:
        return html('<span class="note">never</span>')
    seconds = max((now - value).total_seconds(), 0.0)
    return html('<span title="{abs}">{ago}</span>',
                abs=value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                ago=_ago(seconds))


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return _ago(seconds).removesuffix(" ago")


def _badge(text: str, kind: str | None = None) -> Markup:
    return html('<span class="badge {kind}">{text}</span>', kind=kind or text, text=text)


def _venue(venue_id: uuid.UUID | None, name: str | None) -> Markup:
    if venue_id is None:
        return html('<span class="note">no venue</span>')
    if name:
        return html('{name}<br><span class="note mono">{id}</span>', name=name, id=venue_id)
    return html('<span class="mono">{id}</span>', id=venue_id)


def _short(text: str | None, limit: int = 300) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_STATUS_KIND = {"completed": "healthy", "partial": "degraded", "failed": "failed",
                "running": "muted", "cancelled": "muted"}


# --- sections -------------------------------------------------------------------------------


def _summary(integrations: Sequence[Mapping[str, Any]], total: int,
             lanes: Mapping[str, Mapping[str, Any]], failed_24h: int, dead: int) -> Markup:
    venues = len({r["venue_id"] for r in integrations})
    unhealthy = sum(1 for r in integrations if r["health_status"] == "unhealthy")
    paused = sum(1 for r in integrations if r["paused_at"] is not None)
    held = sum(int(v["held"]) for v in lanes.values())
    due = sum(int(v["due"]) for v in lanes.values()) - held
    tiles = [("Integrations", f"{total}", f"in {venues} venue{'s' if venues != 1 else ''}"),
             ("Unhealthy", str(unhealthy), "integrations"),
             ("Paused", str(paused), "integrations"),
             ("Jobs due", str(due), f"and {held} held by a pause" if held else "waiting to run"),
             ("Failed syncs", str(failed_24h), "last 24 h"),
             ("Dead letters", str(dead), "jobs out of attempts")]
    return html('<div class="summary">{tiles}</div>', tiles=join(
        html('<div><span class="note">{label}</span><b>{value}</b>'
             '<span class="note">{hint}</span></div>', label=label, value=value, hint=hint)
        for label, value, hint in tiles))


def _integrations(rows: Sequence[Mapping[str, Any]], total: int, now: datetime,
                  oauth_providers: frozenset[str]) -> Markup:
    if not rows:
        return html('<section id="integrations"><h2>Integrations by venue</h2>'
                    '<p class="note">No integrations.</p></section>')
    groups: dict[uuid.UUID, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["venue_id"], []).append(row)
    body: list[Markup] = []
    for venue_rows in groups.values():
        first = venue_rows[0]
        for i, row in enumerate(venue_rows):
            venue_cell = (html('<td rowspan="{n}">{venue}</td>', n=len(venue_rows),
                               venue=_venue(row["venue_id"], first["venue_name"]))
                          if i == 0 else _EMPTY)
            body.append(html(
                '<tr data-venue="{venue_id}" data-provider="{provider}">{venue_cell}'
                "<td><b>{provider}</b></td><td>{state}</td><td>{connection}</td>"
                "<td>{health}</td><td>{last_sync}</td>"
                '<td class="num">{pending}</td><td class="num">{running}</td>'
                "<td>{error}</td></tr>",
                venue_id=row["venue_id"], provider=row["provider"], venue_cell=venue_cell,
                state=_state(row, now), connection=_connection(row, oauth_providers),
                health=_badge(row["health_status"]),
                last_sync=_when(row["last_sync_at"], now), pending=row["pending"],
                running=row["running"], error=_last_error(row, now)))
    more = (html('<p class="note">Showing the first {shown} of {total} integrations.</p>',
                 shown=len(rows), total=total) if total > len(rows) else _EMPTY)
    return html(
        '<section id="integrations"><h2>Integrations by venue</h2>{more}<table>'
        "<thead><tr><th>Venue</th><th>Provider</th><th>State</th><th>Connection</th>"
        '<th>Health</th><th>Last sync</th><th class="num">Queued</th>'
        '<th class="num">Running</th>'
        "<th>Last error</th></tr></thead><tbody>{body}</tbody></table></section>",
        more=more, body=join(body))


def _state(row: Mapping[str, Any], now: datetime) -> Markup:
    if row["paused_at"] is not None:
        by = f" by {row['paused_by']}" if row["paused_by"] else ""
        reason = (html('<br><span class="note">{r}</span>', r=_short(row["pause_reason"], 120))
                  if row["pause_reason"] else _EMPTY)
        return html('{badge}<br><span class="note">since {since}{by}</span>{reason}',
                    badge=_badge("paused"), since=_when(row["paused_at"], now), by=by,
                    reason=reason)
    if not row["enabled"]:
        return _badge("disabled", "muted")
    return _badge("enabled", "healthy")


def _connection(row: Mapping[str, Any], oauth_providers: frozenset[str]) -> Markup:
    status = row["status"]
    kind = {"connected": "healthy", "error": "unhealthy", "suspended": "degraded"}.get(
        status, "muted")
    link = _EMPTY
    if (status != "connected" and row["uses_oauth"] and row["provider"] in oauth_providers):
        link = html(' <a href="/oauth/{provider}/start?venue={venue}">connect</a>',
                    provider=row["provider"], venue=row["venue_id"])
    return html("{badge}{link}", badge=_badge(status, kind), link=link)


def _last_error(row: Mapping[str, Any], now: datetime) -> Markup:
    if not row["last_error"]:
        return _EMPTY
    failures = (html(" · {n} failure{s} in a row", n=row["failure_count"],
                     s="s" if row["failure_count"] != 1 else "")
                if row["failure_count"] else _EMPTY)
    return html('<span class="error">{error}</span><br><span class="note">{when}{failures}'
                "</span>", error=_short(row["last_error"]),
                when=_when(row["last_error_at"], now), failures=failures)


def _lanes(lanes: Mapping[str, Mapping[str, Any]]) -> Markup:
    rows = []
    for lane in LANES:
        v = lanes.get(lane, {})
        rows.append(html(
            '<tr data-lane="{lane}"><td><b>{lane}</b></td><td class="num">{due}</td>'
            '<td class="num">{later}</td><td class="num">{held}</td>'
            '<td class="num">{running}</td><td class="num">{dead}</td>'
            '<td class="num">{oldest}</td></tr>',
            lane=lane, due=v.get("due", 0), later=v.get("later", 0), held=v.get("held", 0),
            running=v.get("running", 0), dead=v.get("dead", 0),
            oldest=_age(v.get("oldest_due_s"))))
    return html(
        '<section id="lanes"><h2>Queue lanes</h2><table><thead><tr><th>Lane</th>'
        '<th class="num">Due</th><th class="num">Later</th>'
        '<th class="num">Held by a pause</th><th class="num">Running</th>'
        '<th class="num">Dead letters</th><th class="num">Oldest due</th></tr></thead>'
        "<tbody>{rows}</tbody>"
        '</table><p class="note">Due: pending and due now (a paused integration\'s jobs '
        "among them, held); later: pending with a later start (retries, scheduled).</p>"
        "</section>", rows=join(rows))


def _record_errors(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [e for e in value if isinstance(e, Mapping)] if isinstance(value, list) else []


def _syncs(rows: Sequence[Mapping[str, Any]], now: datetime) -> Markup:
    if not rows:
        return html('<section id="syncs"><h2>Recent syncs</h2>'
                    '<p class="note">No syncs yet.</p></section>')
    body = []
    for row in rows:
        errors = _record_errors(row["errors"])
        failures: list[Markup] = []
        if row["error"]:
            failures.append(html('<div class="error">{e}</div>', e=_short(row["error"])))
        for err in errors[:MAX_RECORD_ERRORS]:
            failures.append(html(
                '<div class="error">{entity} {local_id}: {error}</div>',
                entity=err.get("entity", ""), local_id=err.get("local_id", ""),
                error=_short(str(err.get("error", "")), 200)))
        if len(errors) > MAX_RECORD_ERRORS:
            failures.append(html('<div class="note">and {n} more</div>',
                                 n=len(errors) - MAX_RECORD_ERRORS))
        duration = (f"{row['duration_ms'] / 1000:.1f} s" if row["duration_ms"] is not None
                    else "-")
        body.append(html(
            "<tr><td>{when}</td><td>{venue}</td><td>{provider}</td><td>{what}</td>"
            '<td>{status}</td><td class="num">{ok}</td><td class="num">{failed}</td>'
            '<td class="num">{skipped}</td><td class="num">{duration}</td>'
            "<td>{failures}</td></tr>",
            when=_when(row["started_at"], now), venue=_venue(row["venue_id"], row["venue_name"]),
            provider=row["provider"],
            what=f"{row['operation']} {row['entity_type'] or 'all'}",
            status=_badge(row["status"], _STATUS_KIND.get(row["status"], "muted")),
            ok=row["success_count"], failed=row["error_count"], skipped=row["skip_count"],
            duration=duration, failures=join(failures)))
    return html(
        '<section id="syncs"><h2>Recent syncs</h2><table><thead><tr><th>Started</th>'
        "<th>Venue</th><th>Provider</th><th>What</th><th>Status</th>"
        '<th class="num">OK</th><th class="num">Failed</th><th class="num">Skipped</th>'
        '<th class="num">Took</th><th>Failures</th></tr></thead>'
        "<tbody>{body}</tbody></table></section>", body=join(body))


def _dead_letters(rows: Sequence[Mapping[str, Any]], webhooks: Sequence[Mapping[str, Any]],
                  now: datetime) -> Markup:
    parts: list[Markup] = []
    if rows:
        total = rows[0]["total"]
        more = (html('<p class="note">The newest {n} of {t}.</p>', n=len(rows), t=total)
                if total > len(rows) else _EMPTY)
        parts.append(html(
            "{more}<table><thead><tr><th>Job</th><th>Venue</th><th>Provider</th>"
            '<th>What</th><th>Lane</th><th class="num">Attempts</th><th>Error</th>'
            "<th>Gave up</th>"
            "</tr></thead><tbody>{body}</tbody></table>", more=more, body=join(
                html('<tr><td class="mono">{id}</td><td>{venue}</td><td>{provider}</td>'
                     "<td>{what}</td><td>{lane}</td><td class=\"num\">{attempts}</td>"
                     '<td><span class="error">{error}</span></td><td>{when}</td></tr>',
                     id=r["id"], venue=_venue(r["venue_id"], r["venue_name"]),
                     provider=r["provider"], what=f"{r['operation']} {r['entity_type']}",
                     lane=r["lane"], attempts=r["attempts"],
                     error=_short(r["last_error"] or r["error_kind"] or ""),
                     when=_when(r["completed_at"], now))
                for r in rows)))
        parts.append(html('<p class="note">Replay with <code>syncd dlq replay ID</code> or '
                          "<code>POST /api/v1/dead-letters/ID/replay</code>.</p>"))
    else:
        parts.append(html('<p class="note">No dead letters.</p>'))
    if webhooks:
        parts.append(html(
            "<h3>Webhook events that failed</h3><table><thead><tr><th>Received</th>"
            '<th>Venue</th><th>Provider</th><th>Event</th><th class="num">Tries</th>'
            "<th>Error</th>"
            "</tr></thead><tbody>{body}</tbody></table>", body=join(
                html("<tr><td>{when}</td><td>{venue}</td><td>{provider}</td><td>{event}</td>"
                     '<td class="num">{tries}</td><td><span class="error">{error}</span></td>'
                     "</tr>", when=_when(w["received_at"], now),
                     venue=_venue(w["venue_id"], w["venue_name"]), provider=w["provider"],
                     event=w["event_type"], tries=w["retry_count"], error=_short(w["error"]))
                for w in webhooks)))
    return html('<section id="dead-letters"><h2>Dead letters</h2>{parts}</section>',
                parts=join(parts))


def _who(principal: Principal | None) -> Markup:
    if principal is None:
        return html('<span class="who">public view (SYNCD_HTTP_STATUS_PUBLIC)</span>')
    if principal.venues is None:
        role = "platform admin"
    else:
        n = len(principal.venues)
        role = f"venue admin of {n} venue{'s' if n != 1 else ''}"
    return html('<span class="who">{subject} · {role} '
                '<form method="post" action="/logout"><button type="submit">Sign out'
                "</button></form></span>", subject=principal.subject or "signed in",
                role=role)


# --- the handler ---------------------------------------------------------------------------


def _viewer(request: web.Request) -> Principal | web.Response | None:
    """The principal whose venues the page shows (None: every venue, public view), or the
    response that sends the browser elsewhere."""
    public = request.app[state.SETTINGS].http_status_public
    try:
        return request_principal(request)
    except Anonymous:
        if public:
            return None
        return web.Response(status=303, headers={"Location": login_url(request)})
    except NotConfigured:
        if public:
            return None
        return page("Status", html(
            '<p class="message bad">Signing in is not configured: set SYNCD_API_JWT_SECRET '
            "(or SYNCD_API_JWT_PUBLIC_KEY), SYNCD_API_JWT_ISSUER and "
            "SYNCD_API_JWT_AUDIENCE, or SYNCD_HTTP_STATUS_PUBLIC on a private network.</p>"),
            status=503)
    except AuthFailed:
        if "Authorization" in request.headers:
            return page("Status", html('<p class="message bad">The token is not accepted.</p>'),
                        status=401, headers={"WWW-Authenticate": "Bearer"})
        if public:
            return None
        return web.Response(status=303,
                            headers={"Location": login_url(request, reason="expired")})
    except Forbidden as exc:
        return page("Status", html('<p class="message bad">{m}</p>', m=str(exc)), status=403)


async def status_page(request: web.Request) -> web.StreamResponse:
    viewer = _viewer(request)
    if isinstance(viewer, web.Response):
        return viewer
    venues = None if viewer is None else viewer.venue_filter()
    pool: asyncpg.Pool = request.app[state.POOL]
    try:
        async with pool.acquire(timeout=5.0) as conn:
            integrations = await conn.fetch(_Q["integrations"], venues, MAX_INTEGRATIONS)
            lane_rows = await conn.fetch(_Q["lanes"], venues)
            syncs = await conn.fetch(_Q["recent_syncs"], venues, MAX_SYNCS)
            failed_24h = await conn.fetchval(_Q["failed_syncs_24h"], venues)
            dead = await conn.fetch(_Q["dead_letters"], venues, MAX_DEAD_LETTERS)
            webhooks = await conn.fetch(_Q["failed_webhooks"], venues, MAX_WEBHOOKS)
    except _DB_ERRORS as exc:
        log.error("http.status_database_unavailable", error=type(exc).__name__)
        return page("Status", html('<p class="message bad">The database is unavailable; this '
                                   "page tries again by itself.</p>"), status=503,
                    refresh_seconds=REFRESH_SECONDS, header_extra=_who(viewer))
    now = datetime.now(UTC)
    lanes = {r["lane"]: r for r in lane_rows}
    total = integrations[0]["total"] if integrations else 0
    dead_total = dead[0]["total"] if dead else 0
    oauth_providers = frozenset(name for name, p in request.app[state.PROVIDERS].items()
                                if p.capabilities.oauth is not None)
    body = join([
        _summary(integrations, total, lanes, int(failed_24h or 0), dead_total),
        _integrations(integrations, total, now, oauth_providers),
        _lanes(lanes),
        _syncs(syncs, now),
        _dead_letters(dead, webhooks, now),
        html('<p class="note">Refreshes every {s} s · generated {at}</p>',
             s=REFRESH_SECONDS, at=now.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ])
    return page("Status", body, refresh_seconds=REFRESH_SECONDS, header_extra=_who(viewer))


def routes() -> list[web.RouteDef]:
    return [web.get("/", status_page)]
