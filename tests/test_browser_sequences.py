"""Inspect's Sequences tab in headless Chromium on the attention lesson, trained briefly: the per-head attention maps
of the last checkpoint, then of the first one after the checkpoint slider is moved, are drawn and differ."""

import itertools
import json

import numpy as np
import pytest
from browser_util import app_data_dir, app_url, page, session_id, settle  # noqa: F401  (pytest fixtures)

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

pytestmark = pytest.mark.browser

LESSON = "attention-reverse"
SHOTS = "/tmp/dlviz-sequences-{}.png"

# Every heatmap of the chart titled "… attention weights per head", as [heads][query][key] (null where blank), with the
# caption under it; null while no such chart is drawn.
MAPS_JS = """() => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.offsetParent !== null && g.layout && g.layout.title &&
    String(g.layout.title.text || g.layout.title).includes('attention weights per head'));
  if (!gd) return null;
  const captions = [...document.querySelectorAll('[data-testid=stCaptionContainer]')].map(c => c.innerText);
  return {z: gd.calcdata.map(cd => Array.from(cd[0].z, row => Array.from(row))),
          ticks: Array.from(gd._fullLayout.xaxis.ticktext || []),
          caption: captions.find(c => c.includes('Mean entropy')) || ''};
}"""


def train_into_store(data_dir, browser: str, doc: dict) -> list[int]:
    """A short run of the lesson, written to the server's run store as this browser's run; its checkpoint steps."""
    store = RunStore(data_dir / "runs.sqlite")
    exp = validate(doc)
    run_id = store.create_run(exp, session=browser)
    # a clock 10 s on at each reading: every epoch keeps its checkpoint, however fast the machine trains
    result = Trainer(exp, callbacks=[StoreCallback(store, run_id, clock=itertools.count(0.0, 10.0).__next__)]).run()
    steps = [int(s) for s in store.checkpoints(run_id)["step"]]
    store.close()
    assert result["status"] == "finished", result
    return steps


def wait_for_maps(pg, caption_part: str, timeout_ms: int = 30_000) -> dict:
    """The maps once the chart's caption names `caption_part` (the checkpoint they are of)."""
    pg.wait_for_function("([js, part]) => { const m = eval(js)(); return m && m.caption.includes(part); }", arg=[MAPS_JS, caption_part], timeout=timeout_ms)
    settle(pg)
    return pg.evaluate(MAPS_JS)


def test_attention_maps_change_from_the_first_to_the_last_checkpoint(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    doc = {**gallery.raw(LESSON), "training": {"epochs": 3}}
    pg.goto(app_url + "/inspect")
    pg.get_by_text("Feature maps", exact=True).first.wait_for(timeout=60_000)
    settle(pg)
    steps = train_into_store(app_data_dir, session_id(pg), doc)
    assert len(steps) >= 3

    pg.goto(f"{app_url}/inspect?{share.PARAM}={share.encode(validate(doc))}")  # the trained lesson on screen
    pg.get_by_role("tab", name="Sequences").wait_for(timeout=60_000)
    settle(pg)
    pg.get_by_role("tab", name="Sequences").click()
    last = wait_for_maps(pg, f"(step {steps[-1]:,})")
    heads = doc["model"]["layers"][[layer["type"] for layer in doc["model"]["layers"]].index("MultiheadAttention")]["num_heads"]
    seq_len = doc["data"]["seq_len"]
    z_last = np.array(last["z"], dtype=float)
    assert z_last.shape == (heads, seq_len, seq_len), z_last.shape
    np.testing.assert_allclose(z_last.sum(-1), 1.0, atol=1e-4)  # each query's weights sum to 1
    assert len(last["ticks"]) == seq_len and "final" in last["caption"]
    pg.locator(".js-plotly-plot").filter(has=pg.locator("text", has_text="attention weights per head")).first.screenshot(path=SHOTS.format("last"))

    # the checkpoint slider, from the last checkpoint to the first: the maps are redrawn for the untrained weights
    thumb = pg.get_by_role("slider", name="Checkpoint over training")
    thumb.focus()
    thumb.press("Home")
    first = wait_for_maps(pg, f"initial (step {steps[0]:,})")
    z_first = np.array(first["z"], dtype=float)
    assert z_first.shape == z_last.shape
    assert float(np.abs(z_first - z_last).max()) > 0.05, "the maps did not change between the first and last checkpoint"
    # the page's own Checkpoint box followed the slider, so the rest of Inspect shows the same weights
    assert "initial" in pg.get_by_role("combobox", name="Checkpoint").input_value()
    pg.locator(".js-plotly-plot").filter(has=pg.locator("text", has_text="attention weights per head")).first.screenshot(path=SHOTS.format("first"))
    pg.screenshot(path=SHOTS.format("page"), full_page=True)
    with open(SHOTS.format("maps").replace(".png", ".json"), "w") as f:
        json.dump({"first": first, "last": last}, f)
