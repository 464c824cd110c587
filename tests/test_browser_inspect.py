"""The Inspect page in headless Chromium on a CNN trained on digits: pick a unit by clicking a feature map and see its
theoretical receptive-field box and effective-field overlay on the input image."""

import json
import time

import pytest
from browser_util import ARTIFACTS, ROOT, app_data_dir, app_url, page, session_id, settle  # noqa: F401  (pytest fixtures)
from test_features import DIGITS_CNN

from dlviz.preset import share
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

pytestmark = pytest.mark.browser

README_SHOT = ROOT / "docs" / "inspect-page.png"

# In the page: the Plotly chart whose title contains `title` (Streamlit wraps titles in <b>).
FIND_JS = """(title) => [...document.querySelectorAll('.js-plotly-plot')].find(gd =>
  gd.layout && gd.layout.title && String(gd.layout.title.text || gd.layout.title).includes(title)) || null"""

# The screen position of heatmap cell (row, column) of that chart.
CELL_JS = (
    """([title, row, col]) => {
  const gd = (%s)(title);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(col), box.top + ya._offset + ya.l2p(row)];
}"""
    % FIND_JS
)

# What the receptive-field chart shows: its title, its traces with their sizes, and its boxes.
RF_JS = (
    """() => {
  const gd = (%s)('its field on the input');
  if (!gd) return null;
  return {title: String(gd.layout.title.text || gd.layout.title),
          traces: gd.calcdata.map((cd, i) => { const z = cd[0].z; return {type: gd.data[i].type, name: gd.data[i].name,
                    rows: z ? z.length : 0, max: z ? Math.max(...Array.from(z, r => Math.max(...Array.from(r, v => v || 0)))) : 0}; }),
          shapes: (gd.layout.shapes || []).map(s => [s.x0, s.x1, s.y0, s.y1])};
}"""
    % FIND_JS
)


TRAINED = {**DIGITS_CNN, "training": {"epochs": 2}}


def train_into_store(data_dir, browser: str) -> str:
    """Two epochs of a small CNN on digits, written to the server's run store as this browser's run."""
    doc = TRAINED
    store = RunStore(data_dir / "runs.sqlite")
    run_id = store.create_run(validate(doc), session=browser)
    result = Trainer(validate(doc), callbacks=[StoreCallback(store, run_id)]).run()
    store.close()
    assert result["status"] == "finished" and result["val_accuracy"] > 0.8, result
    return run_id


def click_cell(pg, title: str, row: int, col: int) -> None:
    pg.evaluate("(t) => (%s)(t).scrollIntoView({block: 'center'})" % FIND_JS, title)
    pg.wait_for_timeout(300)
    x, y = pg.evaluate(CELL_JS, [title, row, col])
    pg.mouse.move(x, y)
    pg.wait_for_timeout(300)  # Plotly picks the point under the pointer on mousemove, then reports it on click
    pg.mouse.click(x, y)


def wait_for_unit(pg, title: str, timeout_s: float = 20) -> None:
    """Wait until the receptive-field chart is redrawn for the unit named in `title`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        rf = pg.evaluate(RF_JS)
        if rf and title in rf["title"]:
            settle(pg)
            return
        pg.wait_for_timeout(200)
    raise AssertionError(f"the receptive-field chart still shows {pg.evaluate(RF_JS)['title']!r}, not {title!r}")


def test_click_a_unit_and_see_its_receptive_field(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    pg.goto(app_url + "/inspect")
    pg.get_by_text("Feature maps", exact=True).first.wait_for(timeout=60_000)
    settle(pg)
    train_into_store(app_data_dir, session_id(pg))

    pg.goto(f"{app_url}/inspect?{share.PARAM}={share.encode(validate(TRAINED))}")  # the trained preset on screen
    pg.get_by_text("A training run").wait_for(timeout=60_000)
    settle(pg)
    pg.get_by_text("A training run").click()
    pg.wait_for_function("(t) => (%s)(t) !== null" % FIND_JS, arg="Conv2d → [8, 8, 8], channel 0", timeout=30_000)
    settle(pg)
    shown = pg.get_by_role("combobox", name="Run").input_value()  # the preset's own run, opened on by default
    assert "CNN on digits · finished · 2 epochs" in shown and "another preset" not in shown, shown

    # the first convolution's map: a 3×3 field, box at rows 1-3, columns 4-6 for unit (2, 5)
    first = pg.evaluate(RF_JS)
    assert first["title"].count("Unit (4, 4) of channel 0") == 1, first
    click_cell(pg, "Conv2d → [8, 8, 8], channel 0", 2, 5)
    wait_for_unit(pg, "Unit (2, 5) of channel 0")
    settle(pg)
    rf = pg.evaluate(RF_JS)
    kinds = [t["name"] for t in rf["traces"]]
    assert kinds == ["input", "effective field"], rf
    assert rf["traces"][0]["rows"] == 8 and rf["traces"][1]["rows"] == 8 and rf["traces"][1]["max"] > 0
    assert [4 - 0.5, 6 + 0.5, 1 - 0.5, 3 + 0.5] in rf["shapes"], rf["shapes"]
    assert any("3×3 pixels, rows 1 to 3, columns 4 to 6" in t for t in pg.locator('[data-testid="stMarkdown"]').all_inner_texts())
    ARTIFACTS.mkdir(exist_ok=True)
    chart = pg.locator(".js-plotly-plot").filter(has=pg.locator("text", has_text="its field on the input")).first
    chart.screenshot(path=str(ARTIFACTS / "inspect-rf-conv1.png"))

    # a unit of the second convolution, picked in its grid of maps: channel 3, unit (0, 7), a field cut by the edge
    grid_title = "layers[2] Conv2d → [16, 8, 8]"
    targets = pg.evaluate("(t) => (%s)(t).calcdata[1].length" % FIND_JS, grid_title)
    assert targets == 16 * 8 * 8  # one click target per unit of every map
    # tile 3 of a row of 8 tiles (8 pixels each, 1 pixel gaps): origin column 3·9 = 27
    click_cell(pg, grid_title, 0, 27 + 7)
    wait_for_unit(pg, "Unit (0, 7) of channel 3")
    settle(pg)
    rf = pg.evaluate(RF_JS)
    assert rf["traces"][1]["max"] > 0
    # 5×5 field from row −2, column 5: clipped to rows 0-2, columns 5-7 (solid) and the whole box dashed
    assert [5 - 0.5, 7 + 0.5, 0 - 0.5, 2 + 0.5] in rf["shapes"] and [5 - 0.5, 9 + 0.5, -2 - 0.5, 2 + 0.5] in rf["shapes"], rf
    chart = pg.locator(".js-plotly-plot").filter(has=pg.locator("text", has_text="its field on the input")).first
    chart.screenshot(path=str(ARTIFACTS / "inspect-rf-conv2.png"))
    # the README's picture: the picked map and the unit's field on the input, side by side
    boxes = [pg.locator(".js-plotly-plot").filter(has=pg.locator("text", has_text=t)).first.bounding_box() for t in ("channel 3", "its field on the input")]
    x0, y0 = min(b["x"] for b in boxes) - 10, min(b["y"] for b in boxes) - 10
    x1, y1 = max(b["x"] + b["width"] for b in boxes) + 10, max(b["y"] + b["height"] for b in boxes) + 120
    pg.screenshot(path=str(README_SHOT), clip={"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0})
    (ARTIFACTS / "inspect-rf.json").write_text(json.dumps(rf))

    # the whole page, then every other tab, in a window tall enough to hold them
    pg.set_viewport_size({"width": 1400, "height": 4200})
    pg.evaluate("() => window.scrollTo(0, 0)")
    pg.wait_for_timeout(500)
    pg.screenshot(path=str(ARTIFACTS / "inspect-page.png"))
    growth = None
    for tab, title, shot in (
        ("Receptive fields", "theoretical size", "inspect-growth.png"),
        ("Filters", "Initial weights", "inspect-filters.png"),
        ("Convolution lab", "Output", "inspect-conv-lab.png"),
        ("Activation lab", "f(z)", "inspect-activations.png"),
    ):
        pg.get_by_role("tab", name=tab).click()
        pg.wait_for_function(
            "(t) => [...document.querySelectorAll('.js-plotly-plot')].some(gd => gd.offsetParent !== null &&"
            " (JSON.stringify(gd.layout.title || '') + JSON.stringify(gd.layout.annotations || []) +"
            "  JSON.stringify(gd.data.map(d => d.name))).includes(t))",
            arg=title,
            timeout=20_000,
        )
        pg.wait_for_timeout(800)
        pg.screenshot(path=str(ARTIFACTS / shot))
        if tab == "Receptive fields":  # only the open tab is drawn: read its chart while it is open
            growth = pg.evaluate(
                "() => { const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.data.some(d => "
                "d.name === 'theoretical size')); return gd.data.map(d => Array.from(d.y)); }"
            )
    pg.get_by_role("tab", name="Receptive fields").click()
    # DIGITS_CNN: conv 3 (3), ReLU (3), conv 3 (5), ReLU (5), pool 2 (6)
    assert growth[0] == [3, 3, 5, 5, 6], growth
    assert all(0 < e <= t for e, t in zip(growth[1], growth[0])), growth
