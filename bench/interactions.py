"""How long each interaction of dlviz takes in headless Chromium, from the click until the page has settled, against
the round trip of a minimal Streamlit app (a button that reruns) served side by side and measured in the same run.

"Settled" means, checked on every animation frame after the action:
  1. what the interaction waits for (a page's title, a chart's new title or data, a text) is on screen; it must be
     false before the action (checked), so that the page before the click never counts as its answer (the script
     state alone cannot tell: React may batch a fast run's "running" away, and a click's run starts a moment later);
  2. the script run is over: the state is "notRunning", no element of the previous run is left stale (data-stale), and the
     status widget shows no running icon;
  3. every visible Plotly chart is drawn (it has its _fullLayout).
Pause, Stop and the surface's first result wait for what they show only (1): the live view's timers and the finer
surface keep the script running after the new state is on screen.

Run: python bench/interactions.py [--quick] [--repeats N]; --quick runs one repeat of each interaction. Prints a
table (median ms, ratio to the minimal app's round trip, budget) and one JSON line per interaction.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser_util import CHROMIUM, CHROMIUM_ARGS, _free_port, _healthy, serve  # noqa: E402

from dlviz.preset import gallery, share  # noqa: E402
from dlviz.preset.schema import validate  # noqa: E402

SECOND, FIRST_PAGE, LIVE = 1000, 2000, 300  # budgets in ms: every interaction, the first page, Pause and Stop
TIMEOUT_MS = 60_000
# After a page opens, and before its first measured click, a person reads it. The page uses that time to run Plotly's
# chunk (dlviz_app/preload.py, about 1 s from 1 s after it settled); a click in that second waits for it.
READ_MS = 3000
CNN = {**gallery.raw("cnn-digits"), "training": {**gallery.raw("cnn-digits").get("training", {}), "epochs": 2}}
LONG = {**CNN, "training": {**CNN["training"], "epochs": 500}}
# the short version's run for the surface, Pause and Stop: a small MLP, whose 31×31 surface takes a second, not ten
SPIRAL = {**gallery.raw("spiral-tanh"), "training": {**gallery.raw("spiral-tanh").get("training", {}), "epochs": 3}}
SPIRAL_LONG = {**SPIRAL, "training": {**SPIRAL["training"], "epochs": 600}}

MINIMAL_APP = """import streamlit as st
st.session_state.setdefault("n", 0)
if st.button("Again"):
    st.session_state.n += 1
st.write(f"clicks: {st.session_state.n}")
"""

# Run before an action: marks every chart's current drawing, so that a test can ask whether it was drawn again, and
# notes the time of the action's first pointerdown or keydown (the clock starts there, not when Playwright has found
# and checked the element it clicks).
ARM_JS = """() => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) gd.__benchMark = gd._fullData;
  window.__benchT0 = null;
  const note = () => { if (window.__benchT0 === null) window.__benchT0 = performance.now(); };
  for (const kind of ['pointerdown', 'keydown']) document.addEventListener(kind, note, {capture: true, once: true});
}"""

# The run is over and its elements are on screen (conditions 2 and 3 above, the interaction's own test aside).
IDLE_JS = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  if (!app || app.dataset.testScriptState !== 'notRunning') return false;
  if (document.querySelector('[data-stale=true]') || document.querySelector('[data-testid^=stStatusWidgetRunning]')) return false;
  return [...document.querySelectorAll('[data-testid=stPlotlyChart]')].every(c => c.offsetParent === null ||
    [...c.querySelectorAll('.js-plotly-plot')].some(gd => gd._fullLayout));
}"""

# The Plotly chart whose title contains `title`.
FIND_JS = """(title) => [...document.querySelectorAll('.js-plotly-plot')].find(gd =>
  gd.layout && gd.layout.title && String(gd.layout.title.text || gd.layout.title).includes(title)) || null"""

# The screen position of data point (x, y) of a chart (row and column for a heatmap: y, x).
POINT_JS = (
    """([title, x, y]) => { const gd = (%s)(title);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)]; }"""
    % FIND_JS
)


def title_is(title: str) -> str:
    """A test: the page's title is `title`."""
    return "[...document.querySelectorAll('h1')].some(h => h.innerText.trim() === %s)" % json.dumps(title)


def chart(title: str) -> str:
    """A test: a chart whose title contains `title` is drawn."""
    return "(() => { const gd = (%s)(%s); return !!(gd && gd._fullLayout); })()" % (FIND_JS, json.dumps(title))


def graph_drawn() -> str:
    """A test: the Build page's architecture graph (an SVG drawn on the server) is on screen, with its nodes."""
    return "!!document.querySelector('.dlviz-architecture svg g circle')"


def redrawn(title: str) -> str:
    """A test: the chart whose title contains `title` has been drawn again since the action."""
    return "(() => { const gd = (%s)(%s); return !!(gd && gd._fullLayout && gd._fullData !== gd.__benchMark); })()" % (FIND_JS, json.dumps(title))


def text(pattern: str) -> str:
    """A test: the page's text matches the regular expression `pattern`."""
    return "new RegExp(%s).test(document.body.innerText)" % json.dumps(pattern)


@dataclass
class Interaction:
    name: str
    budget_ms: float | None  # None: shown for information
    ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.ms)


class Bench:
    """The timings of one run of the benchmark, by interaction, in the order they were first measured."""

    def __init__(self):
        self.rows: dict[str, Interaction] = {}
        self.reference_ms: list[float] = []

    def add(self, name: str, budget_ms: float | None, ms: float) -> None:
        self.rows.setdefault(name, Interaction(name, budget_ms)).ms.append(ms)

    @property
    def reference(self) -> float:
        return statistics.median(self.reference_ms)

    def table(self) -> str:
        lines = [f"minimal app's button round trip: {self.reference:.0f} ms (median of {len(self.reference_ms)})", ""]
        lines.append(f"{'interaction':34} {'median ms':>9} {'ratio':>6} {'budget':>7} {'n':>3}  verdict")
        for r in self.rows.values():
            budget = f"{r.budget_ms:.0f}" if r.budget_ms else "-"
            verdict = "" if not r.budget_ms else ("ok" if r.median <= r.budget_ms else f"{r.median / r.budget_ms:.1f}x budget")
            lines.append(f"{r.name:34} {r.median:9.0f} {r.median / self.reference:6.1f} {budget:>7} {len(r.ms):3}  {verdict}")
        return "\n".join(lines)

    def over(self, factor: float) -> list[str]:
        """The interactions whose slowest repeat took more than `factor` times their budget."""
        return [
            f"{r.name}: {max(r.ms):.0f} ms > {factor:g} x {r.budget_ms:.0f} ms" for r in self.rows.values() if r.budget_ms and max(r.ms) > factor * r.budget_ms
        ]


def timed(pg, action, test: str, settle: bool = True) -> float:
    """Milliseconds from `action()` until `test` (a JS expression) holds, and, with `settle`, the page has settled."""
    pg.evaluate(ARM_JS)
    if pg.evaluate(f"() => {test}"):
        raise AssertionError(f"{test} holds before the action: it cannot tell when the action is answered")
    cond = f"({IDLE_JS})() && ({test})" if settle else f"({test})"
    t0 = time.perf_counter()
    action()
    try:
        # the answer: ms since the pointerdown or keydown (at least 0.001, a true value), or 'no event'
        got = pg.wait_for_function(
            f"() => ({cond}) && (window.__benchT0 === null ? 'no event' : Math.max(performance.now() - window.__benchT0, 0.001))",
            polling="raf",
            timeout=TIMEOUT_MS,
        )
    except Exception as err:
        parts = pg.evaluate(f"() => [({IDLE_JS})(), ({test}), document.body.innerText.slice(0, 300)]")
        raise AssertionError(f"no settled page for {test}: idle, the test, the text: {parts}") from err
    ms = got.json_value()
    return ms if isinstance(ms, (int, float)) else (time.perf_counter() - t0) * 1000


def wait_idle(pg, test: str = "true", timeout_ms: int = TIMEOUT_MS) -> None:
    pg.wait_for_function(f"() => ({IDLE_JS})() && ({test})", polling=100, timeout=timeout_ms)


def open_page(pg, address: str, test: str = "true", timeout_ms: int = TIMEOUT_MS) -> None:
    """Open `address` (not measured), wait until it has settled and `test` holds, and read it for READ_MS."""
    pg.goto(address)
    wait_idle(pg, test, timeout_ms)
    pg.wait_for_timeout(READ_MS)


def nav(pg, title: str):
    """The action of clicking page `title` in the sidebar's navigation."""
    return lambda: pg.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()


def pick(pg, label: str, option: str):
    """Open the selectbox `label` and type `option`; returns the action that clicks the option."""
    box = pg.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(option)
    target = pg.get_by_role("option", name=option, exact=True)
    target.wait_for()
    return target.click


def hover_click(pg, title: str, x: float, y: float):
    """Scroll the chart `title` into view and point at (x, y); returns the action that clicks there (Plotly picks the
    point under the pointer on mousemove)."""
    pg.evaluate("(t) => (%s)(t).scrollIntoView({block: 'center'})" % FIND_JS, title)
    pg.wait_for_timeout(200)
    px, py = pg.evaluate(POINT_JS, [title, x, y])
    pg.mouse.move(px, py)
    pg.wait_for_timeout(200)
    return lambda: pg.mouse.click(px, py)


@contextlib.contextmanager
def minimal_server(tmp: Path):
    """(URL) of a `streamlit run` server of MINIMAL_APP, with the same options as the dlviz server."""
    script = tmp / "minimal_app.py"
    script.write_text(MINIMAL_APP)
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true", "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with (tmp / "minimal.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while not _healthy(url):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the minimal streamlit app did not start")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def measure_reference(browser, url: str, bench: Bench, repeats: int) -> None:
    pg = browser.new_page()
    pg.goto(url)
    wait_idle(pg, text("clicks: 0"), timeout_ms=TIMEOUT_MS)
    button = pg.get_by_role("button", name="Again")
    for i in range(repeats + 1):
        ms = timed(pg, button.click, text(f"clicks: {i + 1}\\b"))
        if i:  # the first click loads nothing new but warms the connection
            bench.reference_ms.append(ms)
    pg.close()


def first_pages(browser, url: str, bench: Bench, repeats: int) -> None:
    """The Build page in a new session: on the server's first request, then in new sessions of a warm server."""
    done = f"{title_is('Build')} && {graph_drawn()} && {text('Parameters')}"
    for i in range(repeats + 1):
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = ctx.new_page()
        t0 = time.perf_counter()
        pg.goto(url)
        pg.wait_for_function(f"() => ({IDLE_JS})() && ({done})", polling="raf", timeout=TIMEOUT_MS)
        bench.add("first page (new server)" if i == 0 else "first page (new session)", FIRST_PAGE, (time.perf_counter() - t0) * 1000)
        ctx.close()


def build_and_switch(pg, url: str, bench: Bench, repeats: int) -> None:
    open_page(pg, url, f"{title_is('Build')} && {text('Parameters')}")
    for _ in range(repeats):
        n = pg.locator('[data-testid="stExpander"]').count()
        add = pg.get_by_role("button", name="Add layer")
        bench.add("Build edit (add a layer)", SECOND, timed(pg, add.click, f"document.querySelectorAll('[data-testid=stExpander]').length > {n}"))
    pages = [("Train", "Train"), ("Inspect", "Inspect"), ("Landscape", "Landscape"), ("Build", "Build")]
    for _ in range(repeats):
        for title, _ in pages:
            bench.add(f"switch to {title}", SECOND, timed(pg, nav(pg, title), title_is(title)))


def landscape_lab(pg, url: str, bench: Bench, repeats: int) -> None:
    open_page(pg, url + "/landscape", chart("Rosenbrock"))
    for name in ["Beale", "Himmelblau", "Rosenbrock", "Saddle", "Ackley"][:repeats]:
        bench.add("Landscape function change", SECOND, timed(pg, pick(pg, "Function", name), chart(name)))
    if pg.evaluate(f"() => !{chart('Rosenbrock')}"):
        pick(pg, "Function", "Rosenbrock")()
        wait_idle(pg, chart("Rosenbrock"))
    for x, y in [(0.5, 2.0), (-1.0, 2.5), (1.5, 0.5), (-0.5, 1.0), (0.0, 2.0)][: max(repeats, 1)]:
        click = hover_click(pg, "Rosenbrock", x, y)
        starts = "(() => { const gd = (%s)('Rosenbrock'); const p = gd && gd._fullData.find(d => d.mode === 'lines+markers');" % FIND_JS
        starts += f" return !!p && Math.abs(p.x[0] - {x}) < 1e-6 && Math.abs(p.y[0] - {y}) < 1e-6; }})()"
        bench.add("contour click (set the start)", SECOND, timed(pg, click, starts))


def train_once(pg, url: str, doc: dict) -> None:
    """Load `doc` through its share link, and train it on the Train page until it has finished (not measured)."""
    open_page(pg, f"{url}/train?{share.PARAM}={share.encode(validate(doc))}", text("to start. The charts fill in"), timeout_ms=90_000)
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.get_by_text("finished ·").first.wait_for(timeout=120_000)
    wait_idle(pg)


def inspect_run(pg, bench: Bench, repeats: int, warm: bool = False) -> None:
    """Inspect on the trained run of the preset on screen: open it, switch its checkpoint, click units. With `warm`,
    an unmeasured first open pays the server's one-time costs (importing scikit-learn for the digits), as the first
    of several repeats does in the full version, whose median leaves it out."""
    rf = "its field on the input"
    if warm:
        timed(pg, nav(pg, "Inspect"), f"{title_is('Inspect')} && {chart(rf)}")
        timed(pg, nav(pg, "Train"), title_is("Train"))
    for i in range(repeats):
        bench.add("Inspect open (trained run)", SECOND, timed(pg, nav(pg, "Inspect"), f"{title_is('Inspect')} && {chart(rf)}"))
        if i < repeats - 1:
            timed(pg, nav(pg, "Train"), title_is("Train"))
    box = pg.get_by_role("combobox", name="Checkpoint", exact=True)
    labels = []
    box.click()
    labels = [o.inner_text() for o in pg.get_by_role("option").all()]
    pg.keyboard.press("Escape")
    wait_idle(pg)
    shown = box.input_value()
    others = [label for label in labels if label != shown] + [shown]
    for label in (others * repeats)[:repeats]:
        bench.add("checkpoint switch", SECOND, timed(pg, pick(pg, "Checkpoint", label), redrawn(rf)))
    maps = "layers[0] Conv2d → [8, 8, 8], channel 0"
    for row, col in [(2, 5), (3, 3), (5, 2), (1, 6), (6, 1)][:repeats]:
        click = hover_click(pg, maps, col, row)
        bench.add("unit click (Inspect)", SECOND, timed(pg, click, f"{chart(f'Unit ({row}, {col}) of channel 0')}"))


def network_surface(pg, bench: Bench, repeats: int, full: bool = True) -> None:
    """The loss surface of the trained run of the preset on screen: its first result, then (with `full`) the time
    until the 31×31 grid is drawn."""
    timed(pg, nav(pg, "Landscape"), chart("Rosenbrock"))
    tab = pg.get_by_role("tab", name="Your network's loss surface")
    first = chart("Loss over the plane")
    bench.add("network surface, first result", SECOND, timed(pg, tab.click, first, settle=False))
    wait_idle(pg, chart("(961 points)"))
    for seed in range(1, repeats):
        field = pg.get_by_role("spinbutton", name="Direction seed")
        field.fill(str(seed))
        t = timed(pg, lambda: field.press("Enter"), redrawn("Loss over the plane"), settle=False)
        bench.add("network surface, first result", SECOND, t)
        wait_idle(pg, chart("(961 points)"))
    if not full:
        return
    field = pg.get_by_role("spinbutton", name="Direction seed")
    field.fill(str(repeats + 7))
    bench.add("network surface, full 31x31", None, timed(pg, lambda: field.press("Enter"), redrawn("(961 points)")))


def pause_and_stop(pg, url: str, bench: Bench, repeats: int, doc: dict = LONG) -> None:
    """Pause, then Stop, on a long run of `doc` started on the Train page."""
    open_page(
        pg,
        f"{url}/train?{share.PARAM}={share.encode(validate(doc))}",
        text("to start. The charts fill in|No run of this preset yet|This preset's run"),
        timeout_ms=90_000,
    )
    running = text("running · epoch \\d+ · step [1-9]")
    for i in range(repeats):
        pg.get_by_role("button", name="Train", exact=True).click()
        pg.wait_for_function(f"() => {running}", timeout=TIMEOUT_MS)
        if i == 0:
            for _ in range(repeats):
                bench.add("Pause", LIVE, timed(pg, pg.get_by_role("button", name="Pause", exact=True).click, text("paused · epoch"), settle=False))
                pg.get_by_role("button", name="Resume", exact=True).click()
                pg.wait_for_function(f"() => {running}", timeout=TIMEOUT_MS)
        stop = pg.get_by_role("button", name="Stop", exact=True).click
        bench.add("Stop", LIVE, timed(pg, stop, text("(stopping|stopped) · epoch"), settle=False))
        pg.get_by_text("stopped ·").first.wait_for(timeout=30_000)
        wait_idle(pg)


def run(repeats: int, log_dir: Path | None = None, quick: bool = False) -> Bench:
    """Start the two servers and Chromium, and measure every interaction `repeats` times. The short version (`quick`)
    measures the surface, Pause and Stop on a small MLP instead of the CNN, skips the full surface's time, and the
    minimal app's round trip only before the rest."""
    from playwright.sync_api import sync_playwright

    bench = Bench()
    with tempfile.TemporaryDirectory(prefix="dlviz-bench-") as tmp:
        tmp = Path(tmp)
        logs = log_dir or tmp
        env = {**os.environ, "DLVIZ_DATA_DIR": str(tmp / "data")}
        with minimal_server(tmp) as minimal_url, serve(logs, env) as (url, _), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = None
            try:
                first_pages(browser, url, bench, repeats)
                measure_reference(browser, minimal_url, bench, max(repeats, 3))
                pg = browser.new_page(viewport={"width": 1400, "height": 1400})
                pg.set_default_timeout(TIMEOUT_MS)
                build_and_switch(pg, url, bench, repeats)
                landscape_lab(pg, url, bench, repeats)
                train_once(pg, url, CNN)
                inspect_run(pg, bench, repeats, warm=quick)
                if quick:
                    train_once(pg, url, SPIRAL)
                network_surface(pg, bench, repeats, full=not quick)
                pause_and_stop(pg, url, bench, repeats, SPIRAL_LONG if quick else LONG)
                if not quick:
                    measure_reference(browser, minimal_url, bench, max(repeats, 3))
            except Exception:
                if bench.rows:
                    print(bench.table() if bench.reference_ms else bench.rows, file=sys.stderr)
                with contextlib.suppress(Exception):
                    (ROOT / "artifacts").mkdir(exist_ok=True)
                    pg.screenshot(path=str(ROOT / "artifacts" / "bench-interactions-failed.png"), full_page=True)
                raise
            finally:
                browser.close()
    return bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of each interaction")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench = run(1 if args.quick else args.repeats, quick=args.quick)
    print(bench.table())
    for r in bench.rows.values():
        print(
            json.dumps(
                {"bench": "interactions", "case": r.name, "median_ms": round(r.median), "ratio": round(r.median / bench.reference, 2), "budget_ms": r.budget_ms}
            )
        )


if __name__ == "__main__":
    main()
