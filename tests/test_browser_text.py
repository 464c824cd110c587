"""A share link whose text holds Markdown images and links, opened in headless Chromium: the page asks no other host
for anything, nothing from the preset is clickable, and the text reads as it was written."""

from urllib.parse import urlparse

import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, settle, wait_for_app  # noqa: F401  (pytest fixtures)
from test_app_text import EVIL, hostile_doc

from dlviz.preset import share
from dlviz.preset.schema import validate

pytestmark = pytest.mark.browser

TAG = '<a href="http://elsewhere.invalid/tag">tag</a>'


def hostile_link(base: str) -> str:
    doc = hostile_doc(TAG)
    # an upload that does not exist: the Train page's error quotes it
    doc["data"] = {"name": "csv", "source": "__x__![e](http://elsewhere.invalid/e)", "target": "y"}
    return share.share_link(validate(doc), base)


def shown(locator) -> str:
    """An element's visible text; the zero-width spaces that keep addresses from becoming links are not seen."""
    return locator.inner_text().replace("\u200b", "")


def test_preset_text_fetches_nothing_links_nowhere_and_reads_literally(app_url, page):  # noqa: F811
    pg = page
    requests = []
    pg.on("request", lambda r: requests.append(r.url))
    for path, seen in [("", "Build"), ("train", "Train"), ("inspect", "Inspect"), ("landscape", "Landscape")]:
        pg.goto(hostile_link(f"{app_url}/{path}"))
        wait_for_app(pg)
        pg.get_by_role("heading", name=seen).first.wait_for()
        settle(pg)
        if path == "":
            pg.locator(".dlviz-architecture svg").first.wait_for()  # the architecture graph, with the block's name
        assert pg.locator('a[href*="elsewhere"]').count() == 0, path

        assert pg.locator('img[src*="elsewhere"]').count() == 0, path
        assert pg.locator('[data-testid="stException"]').count() == 0, path
        sidebar = shown(pg.locator('[data-testid="stSidebar"]'))
        assert EVIL in sidebar and "about " + EVIL in sidebar, path
        if path == "":
            ARTIFACTS.mkdir(exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / "preset-text-build.png"), full_page=True)
            main = shown(pg.locator('[data-testid="stMain"]'))
            assert "look at " + EVIL in main
            assert TAG in shown(pg.locator("summary").filter(has_text="Sequential").first)  # the block's label
            graph = pg.locator(".dlviz-architecture svg").first
            assert TAG in [t.text_content() for t in graph.locator("text").all()]  # the block's frame, named literally
            assert "<a " not in graph.inner_html()
        if path == "train":
            main = shown(pg.locator('[data-testid="stMain"]'))
            assert "look at " + EVIL in main and "__x__![e](http://elsewhere.invalid/e)" in main
            pg.screenshot(path=str(ARTIFACTS / "preset-text-train.png"), full_page=True)
    others = {urlparse(u).hostname for u in requests if not u.startswith(("data:", "blob:"))} - {"127.0.0.1"}
    assert not others, sorted(u for u in requests if urlparse(u).hostname in others)
