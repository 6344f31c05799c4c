"""HTML building blocks of the tracking page: the layout, tables, escaping, the inline style sheet.

Every value goes through ``e`` (``html.escape`` with quotes) before it meets markup. The one style
sheet is inline and pinned by its SHA-256 in the Content-Security-Policy: the page loads nothing
from anywhere and runs no script.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

from hub.tracking.model import ApplicationSummary, Scope
from hub.tracking.web import iso

LANG = "en"
CSS = """
:root { color-scheme: light; --ink: #1b1b1b; --muted: #555; --line: #c8c8c8; --accent: #0b4f9c; --bad: #a4000f; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--ink); background: #fff; }
header, main { max-width: 78rem; margin: 0 auto; padding: 0.75rem 1rem; }
header { border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; }
header p { margin: 0; color: var(--muted); }
nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: 1rem; margin: 0; padding: 0; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus { outline: 3px solid #e66100; outline-offset: 2px; }
.skip { position: absolute; left: -999rem; }
.skip:focus { position: static; left: auto; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 1rem; }
h2 { font-size: 1.25rem; margin: 1.5rem 0 0.5rem; }
h3 { font-size: 1.05rem; }
label { display: block; font-weight: 600; }
input, select, button { font: inherit; padding: 0.3rem 0.5rem; border: 1px solid #767676; border-radius: 3px; }
input[type=text], input[type=password] { width: min(36rem, 100%); }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
.filters { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-end; }
.filters input[type=text] { width: 16rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding: 0.25rem 0; }
th, td { border: 1px solid var(--line); padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
thead th { background: #eef2f7; }
td { overflow-wrap: anywhere; }
.timeline td:nth-child(-n+2) { white-space: nowrap; }
.error { color: var(--bad); font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.pager { gap: 1.5rem; }
"""
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
HTML_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
}


def e(value: object) -> str:
    """Escape anything for HTML text and (quoted) attribute values."""
    return html.escape(str(value), quote=True)


def layout(title: str, body: str, scope: Scope | None = None) -> str:
    """A whole page: skip link, navigation (when signed in), one h1, the body."""
    nav = ""
    if scope is not None:
        who = "operator (all portals)" if scope.portal is None else f"portal {scope.portal}"
        nav = ('<nav aria-label="Main"><ul><li><a href="/ui/">Overview</a></li>'
               '<li><a href="/ui/applications">Applications</a></li>'
               '<li><a href="/ui/dead-letters">Dead letters</a></li>'
               '<li><a href="/ui/logout">Sign out</a></li></ul></nav>'
               f"<p>Signed in as {e(who)}</p>")
    return (f'<!DOCTYPE html>\n<html lang="{LANG}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)} · hub tracking</title><style>{CSS}</style></head><body>"
            '<a class="skip" href="#main">Skip to content</a>'
            f'<header><p><strong>xoev-hub tracking</strong></p>{nav}</header>'
            f'<main id="main"><h1>{e(title)}</h1>{body}</main></body></html>\n')


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *, row_headers: bool,
          css: str = "") -> str:
    """A data table; cells are markup already escaped by the caller. With ``row_headers`` the
    first cell of each row is a row header (``th scope=row``)."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = [f'<th scope="row">{row[0]}</th>' if row_headers else f"<td>{row[0]}</td>"]
        cells += [f"<td>{cell}</td>" for cell in row[1:]]
        body.append(f"<tr>{''.join(cells)}</tr>")
    cls = f' class="{e(css)}"' if css else ""
    return (f"<table{cls}><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def summary_table(items: Sequence[ApplicationSummary]) -> str:
    """Applications as a table; each message id links to its timeline."""
    if not items:
        return "<p>No application matches.</p>"
    rows = [(f'<a href="/ui/trace?{e(urlencode({"id": s.message_id}))}">{e(s.message_id)}</a>', e(s.portal),
             e(s.destination), e(s.state or ""), e(iso(s.state_at)), e(iso(s.last_at)), e(s.attempts),
             e(s.reason or ""), e(s.replies)) for s in items]
    return table("Applications, latest event first", ("Message id", "Portal", "Destination", "State",
                 "State since (UTC)", "Last event (UTC)", "Attempts", "Reason", "Replies"), rows, row_headers=False)
