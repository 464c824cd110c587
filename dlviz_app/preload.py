"""The first page's scripts, asked for at once, and the charts' script fetched while the reader reads.

Streamlit's page asks for a widget's script (a chunk of its JavaScript) only once the first script run has sent that
widget, after Streamlit's own scripts have run and its connection is open. A `<link rel="modulepreload">` in the HTML
for the chunks of the first page's widgets lets the browser fetch and compile them while it still runs Streamlit's own.

Plotly's chunk (4.7 MB of JavaScript) is not on the first page: the Build page draws its architecture graph as SVG on
the server, since compiling plotly.js took about 0.6 s of a 2 s first page on two cores. The other pages draw Plotly
charts, so the chunk is named in a `<link rel="prefetch">` (fetched at the lowest priority into the browser's cache),
and a small script asks for its compile (a modulepreload link) once the first page has had time to settle and the
browser is idle: the first chart page then does not pay the compile either, which took 2-3 s of a page switch on a
loaded machine.

`streamlit run app.py` adds PreloadMiddleware (st.App's `middleware`), which adds the links to the HTML of every page
(Streamlit serves the same HTML at each page's address)."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit

# The chunks of the widgets the first page draws: the Build page's editor and the sidebar.
CHUNKS = ("Selectbox", "Button", "NumberInput", "TextInput", "Checkbox", "FileUploader", "DownloadButton", "Metric")
LATER = ("PlotlyChart",)  # the chunks of what the other pages draw


SETTLE_MS = 2500  # after the page's load event: the first page has settled (2.0-2.3 s here, minus its 1 s to load)
# Adds the modulepreload links of LATER's chunks once the first page has settled and the browser is idle.
LATER_SCRIPT = (
    '<script type="module">addEventListener("load", () => setTimeout(() => (window.requestIdleCallback || setTimeout)(() => {{'
    ' for (const href of {hrefs}) {{ const l = document.createElement("link"); l.rel = "modulepreload"; l.href = href;'
    " document.head.append(l); }} }}), {settle}));</script>"
)


def preload_links(static: Path | None = None) -> bytes:
    """The `<link rel="modulepreload">` tags of the installed Streamlit's chunks named in CHUNKS; for those in LATER,
    `<link rel="prefetch">` tags and LATER_SCRIPT (their file names carry a hash that changes with each release, so
    they are looked up, not written down; a chunk that is gone is left out)."""
    static = static or Path(streamlit.__file__).parent / "static" / "static" / "js"
    found = {names: [f"./static/js/{f.name}" for name in names for f in sorted(static.glob(f"{name}.*.js"))] for names in (CHUNKS, LATER)}
    tags = [f'<link rel="modulepreload" href="{href}" />' for href in found[CHUNKS]]
    tags += [f'<link rel="prefetch" href="{href}" />' for href in found[LATER]]
    if found[LATER]:
        tags.append(LATER_SCRIPT.format(hrefs=json.dumps(found[LATER]), settle=SETTLE_MS))
    return "".join(tags).encode()


class PreloadMiddleware:
    """ASGI middleware: in an HTML answer of a GET, put `links` before `</head>` (and fix its length); any other answer,
    request or connection (websockets, static files, the frame route) passes through untouched."""

    def __init__(self, app, links: bytes | None = None):
        self.app = app
        self.links = preload_links() if links is None else links

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or not self.links or scope.get("path", "").startswith(("/static/", "/_stcore/", "/media/")):
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        body = []

        async def wrapped(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                html = headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers
                if not html:
                    await send(message)
                    return
                start = message  # held until the body is whole, so its length can be set
                return
            if start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = b"".join(body).replace(b"</head>", self.links + b"</head>", 1)
            headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() not in (b"content-length", b"etag")]
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, wrapped)
