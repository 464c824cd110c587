"""The Train page in headless Chromium: press Train, watch the loss chart fill and the boundary move, press Stop.

The latency of the first point and the refresh rate are measured by bench/train_latency.py, not asserted here."""

import time

import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, wait_for_app  # noqa: F401

pytestmark = pytest.mark.browser

# In the page: find the chart whose title is `title`, and report its data.
CHART_JS = """(title) => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const t = gd.layout && gd.layout.title && (gd.layout.title.text || gd.layout.title);
    if (typeof t === 'string' && t.replace(/<[^>]+>/g, '') === title) return gd;
  }
  return null;
}"""


def watch_js(window_ms: int = 20_000) -> str:
    """Script that records in window.__watch when the loss chart first shows data and each time its data changes,
    for `window_ms` milliseconds."""
    return """() => {
  window.__watch = {start: performance.now(), first: null, updates: [], last: null};
  const find = %s;
  const tick = () => {
    const gd = find('Loss');
    // _fullData holds the decoded arrays (gd.data may hold base64-packed ones)
    const tr = gd && gd._fullData && gd._fullData[0];
    if (tr && tr.x && tr.x.length) {
      const sig = tr.x.length + ':' + tr.y[tr.y.length - 1];
      const now = performance.now();
      if (window.__watch.first === null) window.__watch.first = now;
      if (sig !== window.__watch.last) { window.__watch.updates.push(now); window.__watch.last = sig; }
    }
    if (performance.now() - window.__watch.start < %d) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}""" % (CHART_JS, window_ms)


WATCH_JS = watch_js()

# Record, in the browser, the size of every message it sends to the server from now on.
SENT_JS = """() => {
  window.__sent = [];
  if (!window.__sentHooked) {
    window.__sentHooked = true;
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) { window.__sent.push(data.byteLength ?? data.length); return send.call(this, data); };
  }
}"""


def boundary_z(pg):
    return pg.evaluate(
        "() => { const gd = (%s)('Decision boundary'); return gd && gd._fullData[0] ? JSON.stringify(Array.from(gd._fullData[0].z, r => Array.from(r))) : null; }"
        % CHART_JS
    )


def test_train_live_then_stop(app_url, page):  # noqa: F811
    pg = page
    pg.set_viewport_size({"width": 1400, "height": 2400})  # the whole page in one screenshot
    pg.goto(app_url + "/train")
    wait_for_app(pg)
    pg.get_by_role("button", name="Train", exact=True).wait_for()
    # the server warms its training workers after its first page view; the page says so until they are ready
    pg.get_by_text("to start. The charts fill in").wait_for(timeout=90_000)
    epochs = pg.get_by_role("spinbutton", name="Epochs")
    epochs.fill("1000")
    epochs.press("Enter")
    wait_for_app(pg)
    pg.evaluate(WATCH_JS)
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.wait_for_function("() => window.__watch.first !== null", timeout=60_000)
    pg.wait_for_function("(f) => (%s)('Decision boundary') !== null" % CHART_JS, timeout=60_000)
    z1 = boundary_z(pg)
    pg.evaluate(SENT_JS)
    time.sleep(5)
    z2 = boundary_z(pg)
    watch = pg.evaluate("() => window.__watch")
    assert len(watch["updates"]) >= 3, "the loss chart must gain points while training"
    # every redraw request carries the hashes of the messages the browser keeps; they must not pile up while a run
    # trains (Streamlit's message cache never aged out the charts of overtaken fragment runs: +44 bytes a request)
    sent = pg.evaluate("() => window.__sent")
    assert len(sent) >= 10 and max(sent[-5:]) - min(sent[:5]) < 200, f"redraw requests grow while training: {sent}"
    assert z1 is not None and z2 is not None and z1 != z2, "the decision boundary must change while training"
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "train-live.png"), full_page=True)
    pg.get_by_role("button", name="Stop", exact=True).click()
    t_stop = time.time()
    # the live view itself turns to the stopped run (no reload): progress text, buttons and charts
    pg.get_by_text("stopped ·").first.wait_for(timeout=15_000)
    pg.get_by_role("button", name="Continue this run").wait_for(timeout=15_000)
    stopped_after = time.time() - t_stop
    assert stopped_after < 15
    assert pg.get_by_role("button", name="Train", exact=True).is_enabled()
    wait_for_app(pg)
    n = pg.evaluate("(f) => { const gd = (%s)('Loss'); return gd._fullData[0].x.length; }" % CHART_JS)
    pg.wait_for_timeout(1500)
    assert pg.evaluate("(f) => { const gd = (%s)('Loss'); return gd._fullData[0].x.length; }" % CHART_JS) == n, (
        "after Stop the chart must stay on the stopped run"
    )
    # every live chart has drawn something: no empty chart on the page
    empty = pg.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .filter(gd => !(gd._fullData || []).some(t => (t.x && t.x.length) || (t.z && t.z.length)))
        .map(gd => gd.layout && gd.layout.title && (gd.layout.title.text || gd.layout.title))""")
    assert not empty, f"charts drawn empty: {empty}"
    # the page redrawn after the status changed holds no error (the compare selection once raised one here)
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator('[data-testid="stException"]').first.inner_text()
    pg.screenshot(path=str(ARTIFACTS / "train-stopped.png"), full_page=True)


def test_a_live_view_that_stops_hearing_from_the_server_reloads_and_finds_its_run(app_url, page):  # noqa: F811
    """Under heavy load Streamlit can drop a session behind a connection the browser still holds open: the page
    then hears nothing more. Here every message from the server is dropped once the run is live; the page must
    reload by itself and show the run, which went on training meanwhile."""
    pg = page
    connections = []

    def route(ws):
        server = ws.connect_to_server()
        conn = {"forward": True}
        connections.append(conn)
        ws.on_message(lambda m: server.send(m))
        server.on_message(lambda m: ws.send(m) if conn["forward"] else None)

    pg.route_web_socket("**/_stcore/stream", route)
    pg.goto(app_url + "/train")
    wait_for_app(pg)
    pg.get_by_text("to start. The charts fill in").wait_for(timeout=90_000)
    epochs = pg.get_by_role("spinbutton", name="Epochs")
    epochs.fill("400")  # a run that is still training when the connection goes quiet
    epochs.press("Enter")
    wait_for_app(pg)
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.get_by_text("running · epoch").first.wait_for(timeout=60_000)
    connections[-1]["forward"] = False  # from now on the page hears nothing from the server
    t0 = time.time()
    with pg.expect_event("load", timeout=90_000):
        pass
    reloaded_after = time.time() - t0
    pg.get_by_text("finished · epoch").first.wait_for(timeout=120_000)
    assert len(connections) >= 2 and reloaded_after < 60, reloaded_after
    # the reloaded page draws the run's curves again
    pg.wait_for_function(
        "() => { const gd = (%s)('Loss'); return !!(gd && gd._fullData && gd._fullData.some(t => t.x && t.x.length)); }" % CHART_JS, timeout=60_000
    )
    pg.screenshot(path=str(ARTIFACTS / "train-reloaded.png"), full_page=True)
