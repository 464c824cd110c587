"""What a person waits for on the Train page, in headless Chromium: the first loss point after pressing Train, how
often the loss chart refreshes while training, and how fast the run trains as the page reports it against the same
preset trained headless.

Prints JSON lines {"bench", "case", "ratio", ...}; ratio = measured / goal (goals: first point 1.5 s, refresh 3 Hz,
so ratio ≤ 1 meets the goal for latency, and for the refresh interval 1/3 s). Run: python bench/train_latency.py
"""

import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser_util import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402
from test_browser_train import WATCH_JS  # noqa: E402

REPS = 3
EPOCHS = 1000


def page_steps(pg, seconds: float) -> float:
    """Steps per second as the page's progress text reports them, read every 0.1 s for `seconds`."""
    seen = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        m = re.search(r"step ([\d,]+) of", pg.get_by_test_id("stProgress").inner_text())
        steps = int(m.group(1).replace(",", "")) if m else None
        if steps is not None and (not seen or steps != seen[-1][1]):
            seen.append((time.perf_counter(), steps))
        time.sleep(0.1)
    return (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])


def headless_steps() -> float:
    """Steps per second of the same preset trained by `python -m dlviz train`'s trainer, with the worker's one thread
    (importing the overhead bench sets it)."""
    from bench.train_overhead import headless_rate
    from dlviz.preset import gallery
    from dlviz.preset.schema import validate

    doc = gallery.raw(gallery.DEFAULT)
    doc["training"]["epochs"] = 200
    return headless_rate(validate(doc))


def main() -> None:
    from playwright.sync_api import sync_playwright

    data = ROOT / "artifacts" / "bench-latency-data"
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DLVIZ_DATA_DIR": str(data)}
    firsts, rates, app, head = [], [], [], []
    with serve(data, env) as (url, _):  # the tests' server: `streamlit run app.py`, answered once it is warm
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(REPS):
                pg = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                pg.set_default_timeout(120_000)
                pg.goto(url + "/train")
                pg.get_by_text("to start. The charts fill in").wait_for()
                epochs = pg.get_by_label("Epochs")
                epochs.fill(str(EPOCHS))
                epochs.press("Enter")
                time.sleep(2)
                pg.evaluate(WATCH_JS)
                pg.get_by_role("button", name="Train", exact=True).click()
                pg.wait_for_function("() => window.__watch.first !== null")
                time.sleep(1)
                app.append(page_steps(pg, 5))
                w = pg.evaluate("() => window.__watch")
                firsts.append((w["first"] - w["start"]) / 1000)
                ups = [u for u in w["updates"] if u >= w["first"] + 1000]
                rates.append((len(ups) - 1) / ((ups[-1] - ups[0]) / 1000) if len(ups) > 2 else 0.0)
                pg.get_by_role("button", name="Stop", exact=True).click()
                time.sleep(2)  # the run stops within a second; the next repetition needs the person's run slot free
                pg.context.close()
                head.append(headless_steps())  # the server is idle again: the same machine, no browser drawing
            browser.close()
    first = sorted(firsts)[len(firsts) // 2]
    rate = sorted(rates)[len(rates) // 2]
    print(
        json.dumps(
            {
                "bench": "train_latency",
                "case": "first-loss-point-after-train",
                "ratio": round(first / 1.5, 3),
                "seconds": round(first, 3),
                "all": [round(f, 3) for f in firsts],
            }
        ),
        flush=True,
    )
    print(
        json.dumps(
            {
                "bench": "train_latency",
                "case": "loss-chart-refresh-interval",
                "ratio": round((1 / max(rate, 1e-9)) / (1 / 3), 3),
                "hz": round(rate, 2),
                "all_hz": [round(r, 2) for r in rates],
            }
        ),
        flush=True,
    )
    ratios = sorted(a / h for a, h in zip(app, head))
    print(
        json.dumps(
            {
                "bench": "train_latency",
                "case": "in-browser-throughput-vs-headless",
                "ratio": round(1 / ratios[len(ratios) // 2], 4),
                "throughput_ratio": round(ratios[len(ratios) // 2], 4),
                "throughput_ratios": [round(a / h, 4) for a, h in zip(app, head)],
                "page_steps_per_s": [round(a) for a in app],
                "headless_steps_per_s": [round(h) for h in head],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
