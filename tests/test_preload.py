"""The first page's scripts asked for at once: the links PreloadMiddleware adds to the pages' HTML, and nothing else."""

import asyncio
import re

from dlviz_app.preload import CHUNKS, PreloadMiddleware, preload_links

PAGE = "<html><head><title>x</title></head><body>ü</body></html>".encode()
LINK = b'<link rel="modulepreload" href="./static/js/P.1.js" />'


def answer(body: bytes, content_type: bytes, parts: int = 1):
    """An ASGI app that answers every request with `body` (sent in `parts` pieces) and records what it was called with."""
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"etag", b'"1"')],
            }
        )
        step = -(-len(body) // parts)
        for i in range(0, len(body), step):
            await send({"type": "http.response.body", "body": body[i : i + step], "more_body": i + step < len(body)})

    return app, seen


def call(app, path: str, kind: str = "http", method: str = "GET", headers=()) -> list[dict]:
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": kind, "path": path, "method": method, "headers": list(headers)}
    asyncio.run(PreloadMiddleware(app, LINK)(scope, receive, send))
    return sent


def whole(sent: list[dict]) -> tuple[dict, bytes]:
    return dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def test_the_installed_streamlit_has_every_chunk_named():
    links = preload_links().decode()
    for name in CHUNKS:  # a release that renamed a chunk would silently lose its preload
        assert f'href="./static/js/{name}.' in links, name
    assert links.count("modulepreload") == len(CHUNKS)
    # Plotly's chunk, by the same address, is also run once the first page has settled
    (plotly,) = re.findall(r'href="(\./static/js/PlotlyChart\.[^"]+\.js)"', links)
    assert links.count("<script") == 1 and f'import("{plotly}")' in links
    assert 'document.querySelector("[data-testid=dlviz-board]")' in links  # but not on the Playground, whose board plays


def test_the_links_go_into_every_page_before_the_head_ends():
    for path, parts in (("/", 1), ("/landscape", 3)):  # a body sent in pieces is put together first
        app, _ = answer(PAGE, b"text/html; charset=utf-8", parts)
        headers, body = whole(call(app, path))
        assert body == PAGE.replace(b"</head>", LINK + b"</head>")
        assert int(headers[b"content-length"]) == len(body)
        assert b"etag" not in headers  # the old tag named the page without the links


def test_everything_else_passes_untouched():
    for path, kind, method, content_type in (
        ("/static/js/a.js", "http", "GET", b"text/html"),  # Streamlit's own files
        ("/data", "http", "GET", b"text/plain"),  # not HTML
        ("/", "http", "HEAD", b"text/html"),
        ("/_stcore/stream", "websocket", "GET", b""),
    ):
        app, seen = answer(PAGE, content_type)
        sent = call(app, path, kind, method)
        assert seen[0]["path"] == path
        if kind == "http":
            headers, body = whole(sent)
            assert body == PAGE and headers[b"etag"] == b'"1"', path


def test_a_page_is_asked_for_uncompressed_and_a_static_file_as_the_browser_asked():
    gzip = [(b"accept-encoding", b"gzip, deflate, br"), (b"cookie", b"a=1")]
    for path, kept in (("/inspect", []), ("/", []), ("/static/js/a.js", gzip[:1])):
        app, seen = answer(PAGE, b"text/html; charset=utf-8")
        call(app, path, headers=gzip)
        assert [h for h in seen[0]["headers"] if h[0] == b"accept-encoding"] == kept, path
        assert (b"cookie", b"a=1") in seen[0]["headers"]
