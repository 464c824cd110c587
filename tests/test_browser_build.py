"""The Build page in headless Chromium: build a small MLP by clicking and read its parameter count off the page."""

import pytest
from browser_util import ARTIFACTS, ROOT, app_data_dir, app_url, page, settle  # noqa: F401  (pytest fixtures)

from dlviz.model.build import summarize
from dlviz.preset import edit
from dlviz.preset.schema import validate

pytestmark = pytest.mark.browser

README_SHOT = ROOT / "docs" / "build-page.png"


def wait_for_choice(pg, label: str, values: list) -> None:
    """Wait until the selectbox labelled `label` shows one of `values`."""
    pg.wait_for_function(
        "([l, vs]) => [...document.querySelectorAll('input[role=combobox]')].some(e => e.getAttribute('aria-label') === l && vs.includes(e.value))",
        arg=[label, values],
    )


def choose(pg, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`."""
    settle(pg)
    box = pg.get_by_role("combobox", name=label, exact=True)
    if box.input_value() == option:
        return
    box.click()
    box.fill(option)  # the list is virtualised: typing filters it so that the option is rendered
    pg.get_by_role("option", name=option, exact=True).click()
    wait_for_choice(pg, label, [option])


def expander(pg, title_start: str):
    return pg.locator('[data-testid="stExpander"]').filter(has=pg.locator("summary", has_text=title_start))


def metric(pg, label: str) -> str:
    box = pg.locator('[data-testid="stMetric"]').filter(has=pg.get_by_text(label, exact=True))
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def add_layer(pg, group: str, type_name: str, title: str) -> None:
    choose(pg, "Group", group)
    # the type list follows the group only once the app has rerun with it
    wait_for_choice(pg, "Layer type", edit.layer_types(group))
    choose(pg, "Layer type", type_name)
    settle(pg)
    pg.get_by_role("button", name="Add layer").click()
    expander(pg, title).wait_for()
    settle(pg)


def test_build_an_mlp_by_clicking(app_url, page):  # noqa: F811
    pg = page
    pg.goto(app_url)
    pg.get_by_text("Parameters", exact=True).wait_for(timeout=60_000)
    settle(pg)

    pg.get_by_role("button", name="New empty model").click()
    pg.get_by_text("No layers yet").wait_for()
    settle(pg)
    shape = pg.get_by_role("textbox", name="Input shape")
    shape.fill("2")
    shape.press("Enter")
    settle(pg)

    add_layer(pg, "dense", "Linear", "[0] Linear 16 → [16]")
    add_layer(pg, "activation", "ReLU", "[1] ReLU → [16]")
    add_layer(pg, "dense", "Linear", "[2] Linear 16 → [16]")

    last = expander(pg, "[2] Linear 16")
    last.locator("summary").click()
    out = last.get_by_label("out_features")
    out.fill("3")
    out.press("Enter")
    expander(pg, "[2] Linear 3 → [3]").wait_for()
    settle(pg)

    model = {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 16}, {"type": "ReLU"}, {"type": "Linear", "out_features": 3}]}
    expected = summarize(validate({"format": "dlviz-preset/1", "model": model})).total_params
    assert expected == (2 * 16 + 16) + (16 * 3 + 3)
    pg.wait_for_function("n => [...document.querySelectorAll('[data-testid=stMetricValue]')].some(e => e.innerText === n)", arg=f"{expected:,}")
    assert metric(pg, "Parameters") == f"{expected:,}"
    assert metric(pg, "Output") == "[3]"

    # the architecture graph draws every layer, and the table ends with the totals
    graph = pg.locator(".dlviz-architecture svg")
    for label in ("input [2]", "Linear 16", "ReLU", "Linear 3", "output [3]"):
        graph.locator("g text").filter(has_text=label).first.wait_for()
    assert graph.locator("g").count() == 5  # a node per layer, the input and the output
    assert not pg.locator('[data-testid="stException"]').count()

    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "build-mlp.png"))

    # a richer view for the README: LeNet-5 from the gallery with its first layer open
    choose(pg, "Gallery", "LeNet-5 on MNIST")
    pg.get_by_role("button", name="Load", exact=True).click()
    pg.wait_for_function("() => [...document.querySelectorAll('[data-testid=stMetricValue]')].some(e => e.innerText === '61,706')")
    settle(pg)
    first = expander(pg, "[0] Conv2d 6@5×5 → [6, 28, 28]")
    first.locator("summary").click()
    first.get_by_label("padding_mode").wait_for()
    pg.wait_for_timeout(500)  # let the expander finish opening before the screenshot
    graph.locator("g text").filter(has_text="Conv2d 16@5×5").first.wait_for()
    pg.mouse.move(0, 0)
    README_SHOT.parent.mkdir(exist_ok=True)
    pg.screenshot(path=str(README_SHOT))
    assert README_SHOT.stat().st_size < 300_000
    assert metric(pg, "Receptive field") == "16"
