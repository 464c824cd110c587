"""The Playground page in headless Chromium at 1400×900: pick a data set, grow the network on the board, play and watch
the neurons' maps change, edit a weight, click points onto the output plane, show the test data, and open the page's
address in a fresh browser to find the same network and points.

Each step's screenshot is saved under artifacts/playground/."""

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, settle, wait_for_app  # noqa: F401

from dlviz.preset import share
from dlviz.training import addresses

pytestmark = pytest.mark.browser

SHOTS = ARTIFACTS / "playground"
VIEWPORT = {"width": 1400, "height": 900}
BOARD = "[data-testid=dlviz-board]"

# The page coordinates of the point `frac` of the way along an edge's path (overlapping edges make a plain hover of
# the element's centre land on a neighbour).
EDGE_POINT_JS = """([id, frac]) => {
  const path = document.querySelector(`[data-testid=${id}]`);
  const p = path.getPointAtLength(path.getTotalLength() * frac);
  const q = new DOMPoint(p.x, p.y).matrixTransform(path.getScreenCTM());
  return [q.x, q.y];
}"""

# The number of pixels of the output canvas that are near-black: the rings of the test points.
DARK_PIXELS_JS = """() => {
  const c = document.querySelector('[data-testid=board-output]');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 60 && d[i + 1] < 60 && d[i + 2] < 60) n++;
  return n;
}"""

# The colour of the output canvas at a point of the plane (x1, x2).
PIXEL_AT_JS = """([x, y]) => {
  const c = document.querySelector('[data-testid=board-output]');
  const E = document.querySelector('[data-testid=dlviz-board]').__board.state.extent;
  const px = Math.round((x + E) / (2 * E) * c.width), py = Math.round((E - y) / (2 * E) * c.height);
  return Array.from(c.getContext('2d').getImageData(px, py, 1, 1).data.slice(0, 3));
}"""


# Whether the board's Play/Pause button says `name` ("Play" or "Pause").
PLAY_ICON_JS = """(name) => { const b = document.querySelector('[data-testid=board-play]'); return !!b && b.title === name; }"""


def play_button(pg):
    """The Play/Pause button, on the board when the page is served with the frame route."""
    return pg.locator("[data-testid=board-play]")


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"))


def choose(pg, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    box = pg.get_by_role("combobox", name=label, exact=True)
    box.click()
    pg.get_by_role("listbox").get_by_role("option", name=option, exact=True).click()
    pg.wait_for_function(
        "([l, v]) => [...document.querySelectorAll('input[role=combobox]')].some(e => e.getAttribute('aria-label') === l && e.value === v)",
        arg=[label, option],
    )


def epoch(pg) -> int:
    return int(re.sub(r"\D", "", pg.locator("[data-testid=board-epoch]").inner_text()) or 0)


def canvas(pg, testid: str) -> str:
    return pg.evaluate("(id) => document.querySelector(`[data-testid=${id}]`).toDataURL()", testid)


def frames(pg) -> int:
    return pg.evaluate("() => window.__dlvizBoardFrames || 0")


def hidden_units(pg) -> list[int]:
    return pg.evaluate(f"() => document.querySelector('{BOARD}').__board.state.hidden.map(h => h.units)")


def address_preset(url: str, data_dir):
    """The preset the page's address carries (`preset=` token, or `p=` id kept in the server's run store, an SQLite file
    in its data directory)."""
    q = parse_qs(urlparse(url).query)
    if share.PARAM in q:
        return share.decode(q[share.PARAM][0])
    assert share.ID_PARAM in q, f"the address carries no preset: {url}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLVIZ_DATA_DIR", str(data_dir))
        return addresses.kept(q[share.ID_PARAM][0])


def hover_edge(pg, testid: str, frac: float = 0.3) -> tuple[float, float]:
    x, y = pg.evaluate(EDGE_POINT_JS, [testid, frac])
    pg.mouse.move(x - 3, y)
    pg.mouse.move(x, y)
    return x, y


def edge_tip(pg, testid: str) -> str:
    """The tooltip of an edge after hovering it."""
    hover_edge(pg, testid)
    tip = pg.locator(f"{BOARD} .dlvb-tip")
    tip.wait_for(state="visible", timeout=5_000)
    return tip.inner_text()


def test_playground_script(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    pg.set_viewport_size(VIEWPORT)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))

    # 1. the page, the spiral, the board: all on one screen
    pg.goto(app_url + "/playground")
    wait_for_app(pg)
    pg.locator("[data-testid=neuron-0-0]").wait_for(timeout=60_000)
    choose(pg, "Data", "spiral")
    settle(pg)
    pg.locator(BOARD).wait_for()
    pg.locator("[data-testid=neuron-0-0]").wait_for()
    assert hidden_units(pg) == [4, 2]
    fits = pg.evaluate("() => [document.querySelector('[data-testid=stMain]').scrollHeight, window.innerHeight]")
    assert fits[0] <= fits[1] + 2, f"the page scrolls at 1400×900: {fits}"
    shot(pg, "01-spiral")
    bar_y = play_button(pg).bounding_box()["y"]

    # 2. a layer and a neuron from the board's own buttons
    pg.locator("[data-testid=layers-plus]").click()
    pg.locator("[data-testid=neuron-2-0]").wait_for()
    settle(pg)
    pg.locator("[data-testid=units-plus-0]").click()
    pg.locator("[data-testid=neuron-0-4]").wait_for()
    settle(pg)
    units = hidden_units(pg)
    assert len(units) == 3 and units[0] == 5, units
    assert pg.locator(BOARD).get_by_text("3 hidden layers").is_visible()
    shot(pg, "02-grown")

    # 3. Play: the maps, the frame count and the epoch move
    play_button(pg).click()
    pg.wait_for_function(PLAY_ICON_JS, arg="Pause", timeout=60_000)  # the button turns to Pause
    pg.wait_for_function(
        "() => { const t = document.querySelector('[data-testid=board-epoch]'); return t && +t.textContent.replace(/\\D/g, '') > 0; }", timeout=60_000
    )
    e0, f0, m0 = epoch(pg), frames(pg), canvas(pg, "neuron-0-0")
    shot(pg, "03-playing-a")
    # it plays on by itself: frames are drawn, epochs pass and a neuron's map changes (how many frames a second is
    # bench/playground.py's to measure, not a test's on a machine that may be loaded)
    pg.wait_for_function(
        "([f0, e0, m0]) => (window.__dlvizBoardFrames || 0) >= f0 + 5"
        " && +document.querySelector('[data-testid=board-epoch]').textContent.replace(/\\D/g, '') > e0"
        " && document.querySelector('[data-testid=neuron-0-0]').toDataURL() !== m0",
        arg=[f0, e0, m0],
        polling=200,
        timeout=60_000,
    )
    shot(pg, "03-playing-b")
    play_button(pg).click()  # Pause
    pg.wait_for_function(PLAY_ICON_JS, arg="Play")
    settle(pg)
    time.sleep(0.5)
    paused_epoch = epoch(pg)
    time.sleep(0.6)
    assert epoch(pg) == paused_epoch, "Pause stops the epochs"
    assert play_button(pg).bounding_box()["y"] == pytest.approx(bar_y, abs=2), "Play and Pause add nothing above the page"
    # one step while paused: the run moves by exactly one optimizer step, and stays paused
    step_of = f"() => (document.querySelector('{BOARD}').__board.frame || {{}}).step"
    s0 = pg.evaluate(step_of)
    pg.locator("[data-testid=board-step]").click()
    pg.wait_for_function(f"(n) => ({step_of})() === n + 1", arg=s0, timeout=20_000)
    settle(pg)
    time.sleep(0.5)
    assert pg.evaluate(step_of) == s0 + 1 and pg.evaluate(PLAY_ICON_JS, "Play"), "One step takes one step and plays no further"

    # 4. a weight: its tooltip, the editor, a refused entry, an accepted one
    tip = edge_tip(pg, "edge-0-0-0")
    assert tip.startswith("weight ") and "x1" in tip, tip
    x, y = hover_edge(pg, "edge-0-0-0")
    pg.mouse.click(x, y)
    box = pg.locator("[data-testid=board-weight-input]")
    box.wait_for(state="visible")
    sent = pg.evaluate("() => window.__dlvizBoardN || 0")
    box.fill("abc")
    box.press("Enter")
    assert box.is_visible() and "bad" in (box.get_attribute("class") or ""), "a non-number stays in the editor, marked"
    assert pg.locator(f"{BOARD} .dlvb-editor .msg").inner_text() == "enter a finite number"
    assert pg.evaluate("() => window.__dlvizBoardN || 0") == sent, "nothing is sent for a non-number"
    box.fill("1.5")
    box.press("Enter")
    assert not box.is_visible()
    settle(pg)
    deadline = time.time() + 20
    while time.time() < deadline:
        pg.mouse.move(10, 10)
        tip = edge_tip(pg, "edge-0-0-0")
        if tip.startswith("weight 1.500"):
            break
        time.sleep(0.3)
    assert tip.startswith("weight 1.500"), tip
    w = pg.evaluate(f"() => document.querySelector('{BOARD}').__board.frame.weights[0][0][0]")
    assert w == pytest.approx(1.5), w
    shot(pg, "04-weight")
    pg.mouse.move(10, 10)

    # 5. two points shift-clicked onto the output plane (the −1 class) end up in the preset in the address
    out = pg.locator("[data-testid=board-output]")
    bb = out.bounding_box()
    extent = pg.evaluate(f"() => document.querySelector('{BOARD}').__board.state.extent")
    clicks = [(0.25, 0.3), (0.7, 0.8)]
    expected = [(-extent + 2 * extent * fx, extent - 2 * extent * fy) for fx, fy in clicks]
    for (fx, fy), (ex, ey) in zip(clicks, expected):
        before = pg.evaluate("() => window.__dlvizBoardN || 0")
        out.click(modifiers=["Shift"], position={"x": bb["width"] * fx, "y": bb["height"] * fy})
        pg.wait_for_function("(n) => (window.__dlvizBoardN || 0) > n", arg=before)
        # the point is drawn from the rerun's state
        pg.wait_for_function(
            f"([x, y]) => document.querySelector('{BOARD}').__board.state.points.train.some(p => Math.abs(p[0] - x) < 0.2 && Math.abs(p[1] - y) < 0.2 && p[2] === -1)",
            arg=[ex, ey],
            timeout=10_000,
        )
        settle(pg)
    deadline = time.time() + 20
    while True:
        doc = address_preset(pg.url, app_data_dir)
        if len(doc.data.points or []) >= 2 or time.time() > deadline:
            break
        time.sleep(0.3)
    points = [list(p) for p in doc.data.points or []]
    assert len(points) == 2, points
    for (px, py, label), (ex, ey) in zip(points, expected):
        assert label == 0 and abs(px - ex) < 0.2 and abs(py - ey) < 0.2, (points, expected)
    assert doc.data.name == "spiral"
    shot(pg, "05-points")

    # 6. Show test data: the test points are drawn with dark rings
    dark_before = pg.evaluate(DARK_PIXELS_JS)
    test_count = pg.evaluate(f"() => document.querySelector('{BOARD}').__board.state.points.test.length")
    assert test_count > 0
    pg.get_by_text("Show test data", exact=True).click()
    pg.wait_for_function(f"() => document.querySelector('{BOARD}').__board.state.show_test === true")
    settle(pg)
    pg.wait_for_function(f"(n) => ({DARK_PIXELS_JS})() > n + 50", arg=dark_before, timeout=10_000)
    # under the board, the clicked points can be removed
    pg.get_by_role("button", name="Remove the 2 added points").wait_for()
    shot(pg, "06-test-data")

    # 7. the page's address in a fresh browser: the same network and points
    url = pg.url
    assert "preset=" in url or "p=" in url, url
    ctx = pg.context.browser.new_context(viewport=VIEWPORT)
    try:
        fresh = ctx.new_page()
        fresh.set_default_timeout(20_000)
        fresh.goto(url)
        wait_for_app(fresh)
        fresh.locator("[data-testid=neuron-2-0]").wait_for(timeout=60_000)
        fresh.locator("[data-testid=neuron-0-4]").wait_for()
        assert hidden_units(fresh) == units
        assert fresh.locator(BOARD).get_by_text("3 hidden layers").is_visible()
        assert fresh.get_by_role("combobox", name="Data", exact=True).input_value() == "spiral"
        again = address_preset(fresh.url, app_data_dir)
        assert [list(p) for p in again.data.points] == points
        drawn = fresh.evaluate(f"() => document.querySelector('{BOARD}').__board.state.points.train")
        for px, py, _ in points:
            assert any(abs(d[0] - px) < 1e-6 and abs(d[1] - py) < 1e-6 and d[2] == -1 for d in drawn), (px, py)
            r, g, b = fresh.evaluate(PIXEL_AT_JS, [px, py])
            assert abs(r - 245) < 40 and abs(g - 147) < 40 and abs(b - 34) < 40, ("an orange dot", (r, g, b))
        shot(fresh, "07-fresh")
        assert fresh.locator('[data-testid="stException"]').count() == 0
    finally:
        ctx.close()
    # 8. Reset: the network goes back to its initial weights, epoch 0, and Play is offered
    pg.locator("[data-testid=board-reset]").click()
    pg.wait_for_function(f"() => document.querySelector('{BOARD}').__board.frame.status === 'untrained'", timeout=20_000)
    settle(pg)
    assert epoch(pg) == 0 and pg.evaluate(PLAY_ICON_JS, "Play")
    shot(pg, "08-reset")
    assert pg.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
    # the page was served with the first page's links (Streamlit gzips every page's HTML but the root's)
    assert pg.locator('link[rel=modulepreload][href*="PlotlyChart."]').count() == 1
    # in all this page's time, the board was never held for the second in which Plotly's chunk runs (dlviz_app/preload.py)
    assert pg.evaluate("() => document.documentElement.dataset.dlvizCharts") is None
