"""The first page's scripts, asked for at once. Streamlit's page asks for a widget's or a chart's chunk of JavaScript only
once the first script run has sent one, after its own scripts have run and its connection is open. A `<link
rel="modulepreload">` for the widgets' chunks and Plotly's (4.7 MB) in the HTML lets the browser fetch and compile them
while it still runs Streamlit's own scripts.

The Build page, the first, draws no Plotly chart (its architecture graph is SVG), but every other page does. Compiling
Plotly's chunk only when a page first draws a chart, or once the first page had settled, moved its cost (2-4 s on a
loaded two-core machine) onto that page switch or whichever click came next, so it stays with the first page.

A modulepreload fetches and compiles a module but does not run it. Running Plotly's chunk (its top level sets up every
trace type) took about 1.0 s more, on the first page that drew a chart: the first switch to Inspect took 2.0-2.2 s, the
second 0.5-0.8 s. A small module script (IDLE_IMPORT_JS) imports the chunk once the first page's script run has
settled, after IDLE_IMPORT_DELAY_MS and when the browser is idle: the first chart page then finds it ready. It holds the
page for 1.1-1.5 s (one long task), so the Playground, whose board animates from its first click, is left alone.

`streamlit run app.py` adds PreloadMiddleware (st.App's `middleware`), which adds the links to the HTML of every page
(Streamlit serves the same HTML at each page's address)."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit

CHARTS = "PlotlyChart"  # the chunk of Plotly's charts, which IDLE_IMPORT_JS also runs
# The chunks of what the pages draw first: charts, and the widgets of the Build page's editor and sidebar.
CHUNKS = (CHARTS, "Selectbox", "Button", "NumberInput", "TextInput", "Checkbox", "FileUploader", "DownloadButton", "Metric")


IDLE_IMPORT_DELAY_MS = 1000  # after the first page has settled: a person reads it before the next click
ANIMATED = "[data-testid=dlviz-board]"  # the Playground's board, which plays from the first click
# Run once the first script run has settled (Streamlit's stApp says "notRunning", after "initial" before the first run).
IDLE_IMPORT_JS = """<script type="module">
const settled = () => { const app = document.querySelector('[data-testid=stApp]');
  return !!app && app.dataset.testScriptState === 'notRunning' && !document.querySelector('[data-stale=true]'); };
const idle = window.requestIdleCallback || ((f) => setTimeout(f, 0));
const wait = setInterval(() => {
  if (!settled()) return;
  clearInterval(wait);
  setTimeout(() => idle(() => {
    if (document.querySelector(%s)) return;  // a page that animates is not frozen for a second: its first chart page pays
    import(%s).then(() => { document.documentElement.dataset.dlvizCharts = 'ready'; }, () => {});
  }, { timeout: 5000 }), %d);
}, 100);
</script>"""


def _chunk_files(static: Path | None, names) -> list[str]:
    """The file names of the installed Streamlit's chunks `names` (they carry a hash that changes with each release, so
    they are looked up, not written down; a chunk that is gone is left out)."""
    static = static or Path(streamlit.__file__).parent / "static" / "static" / "js"
    return [f.name for name in names for f in sorted(static.glob(f"{name}.*.js"))]


def preload_links(static: Path | None = None) -> bytes:
    """The `<link rel="modulepreload">` tags of the chunks named in CHUNKS, and the script that runs Plotly's chunk once
    the first page has settled."""
    files = _chunk_files(static, CHUNKS)
    tags = [f'<link rel="modulepreload" href="./static/js/{name}" />' for name in files]
    tags += [
        IDLE_IMPORT_JS % (json.dumps(ANIMATED), json.dumps(f"./static/js/{name}"), IDLE_IMPORT_DELAY_MS) for name in files if name.startswith(CHARTS + ".")
    ]
    return "".join(tags).encode()


class PreloadMiddleware:
    """ASGI middleware: in an HTML answer of a GET, put `links` before `</head>` (and fix its length); any other answer,
    request or connection (websockets, static files, the frame route) passes through untouched.

    A page's GET reaches Streamlit without its Accept-Encoding: Streamlit gzips the HTML of every page but the first
    (/train, /inspect, ...), which this middleware would then pass on without the links. The page is 9 kB; a proxy in
    front may still compress it."""

    def __init__(self, app, links: bytes | None = None):
        self.app = app
        self.links = preload_links() if links is None else links

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or not self.links or scope.get("path", "").startswith(("/static/", "/_stcore/", "/media/")):
            await self.app(scope, receive, send)
            return
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"accept-encoding"]}
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
