"""Server-rendered HTML: the status page, the login form and the OAuth result pages.

No template engine and no front-end build. :func:`html` fills a template of ours with values
that are escaped unless they are :class:`Markup` (HTML this module built), so a value from
the database, a token or a request can never become markup. Every page is sent with a
Content-Security-Policy that allows no script and no remote resource, no referrer to another
site (an OAuth callback's address holds its code) and no caching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from aiohttp import web

__all__ = ["PAGE_HEADERS", "Markup", "html", "join", "page"]

#: Headers of every HTML page.
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Never a referrer to another site (an OAuth callback's address holds its code); a form
    # posted to this site keeps its Origin header, which /login and /logout check.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


class Markup(str):
    """Text that is HTML already (built by :func:`html`); never escaped again."""

    __slots__ = ()


def _value(value: object) -> str:
    if isinstance(value, Markup):
        return value
    return escape("" if value is None else str(value), quote=True)


def html(template: str, **values: object) -> Markup:
    """``template`` (ours, with ``{name}`` fields) filled with ``values``, each escaped
    unless it is :class:`Markup`."""
    return Markup(template.format_map({k: _value(v) for k, v in values.items()}))


def join(parts: Iterable[Markup], separator: str = "") -> Markup:
    """Several pieces of markup as one."""
    return Markup(separator.join(_value(p) for p in parts))


_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d2330; background: #f5f6f8; }
header { background: #1d2330; color: #fff; padding: 10px 24px; display: flex;
         align-items: center; gap: 16px; }
header h1 { font-size: 17px; margin: 0; font-weight: 600; }
header .who { margin-left: auto; font-size: 13px; color: #c9cfdb; }
header form { display: inline; }
header button { background: transparent; color: #c9cfdb; border: 1px solid #56607a;
                border-radius: 4px; padding: 2px 8px; cursor: pointer; }
main { padding: 16px 24px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; margin: 0 0 18px;
          padding: 12px 16px; }
h2 { font-size: 15px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 4px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eef0f4;
         vertical-align: top; }
th { font-weight: 600; color: #56607a; font-size: 12px; text-transform: uppercase; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.note.mono { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px;
         font-weight: 600; }
.healthy { background: #dff4e4; color: #17652b; }
.degraded { background: #fff1cc; color: #7a5400; }
.unhealthy, .failed, .dead { background: #fde0df; color: #9b1c17; }
.unknown, .muted { background: #eceef2; color: #56607a; }
.paused { background: #e3e8ff; color: #2a3a8f; }
.error { color: #9b1c17; }
.note { color: #56607a; font-size: 12px; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 18px; }
.summary div { background: #fff; border: 1px solid #dde1e8; border-radius: 6px;
               padding: 8px 14px; min-width: 120px; }
.summary b { display: block; font-size: 20px; }
code, .mono { font-family: ui-monospace, "SF Mono", Menlo, monospace; font-size: 12px; }
form.login textarea { width: 100%; max-width: 640px; height: 120px; font-family: monospace; }
form.login button { margin-top: 8px; padding: 6px 14px; }
.message { padding: 12px 16px; border-radius: 6px; background: #fff; border: 1px solid #dde1e8;
           max-width: 760px; }
.message.bad { border-color: #f0b4b1; background: #fff6f5; }
.message.good { border-color: #a9dcb4; background: #f4fbf5; }
"""


def page(title: str, body: Markup, *, status: int = 200, refresh_seconds: int | None = None,
         header_extra: Markup | None = None,
         headers: Mapping[str, str] | None = None) -> web.Response:
    """A whole HTML page."""
    refresh = (html('<meta http-equiv="refresh" content="{s}">', s=refresh_seconds)
               if refresh_seconds else Markup(""))
    text = html(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}'
        "<title>{title} · syncd</title><style>{style}</style></head>"
        "<body><header><h1>syncd</h1><span>{title}</span>{extra}</header>"
        "<main>{body}</main></body></html>",
        refresh=refresh, title=title, style=Markup(_STYLE), extra=header_extra or Markup(""),
        body=body)
    return web.Response(text=text, status=status, content_type="text/html",
                        charset="utf-8", headers={**PAGE_HEADERS, **(headers or {})})
