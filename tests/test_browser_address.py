"""The address bar and the layer panels in headless Chromium: a reload keeps the model built on screen, a classroom
link opens its page, an edited layer's panel stays open, and Undo brings back a deleted layer."""

from urllib.parse import parse_qs, urlparse

import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, settle, wait_for_app  # noqa: F401  (pytest fixtures)

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate

pytestmark = pytest.mark.browser


def expander(pg, title_start: str):
    return pg.locator('[data-testid="stExpander"]').filter(has=pg.locator("summary", has_text=title_start))


def address_preset(pg) -> dict:
    token = parse_qs(urlparse(pg.url).query)[share.PARAM][0]
    return share.decode(token).to_dict()


def test_an_edited_panel_stays_open_undo_restores_a_deleted_layer_and_a_reload_keeps_the_model(app_url, page):  # noqa: F811
    pg = page
    pg.goto(app_url)
    wait_for_app(pg)
    first = gallery.raw(gallery.DEFAULT)["model"]["layers"][0]
    assert first["type"] == "Linear"
    panel = expander(pg, f"[0] Linear {first['out_features']} ")
    panel.locator("summary").click()
    out = panel.get_by_label("out_features")
    out.fill("5")
    out.press("Enter")
    edited = expander(pg, "[0] Linear 5 ")
    edited.wait_for()
    settle(pg)
    assert edited.get_by_label("out_features").is_visible()  # the panel is still open after the edit
    edited.get_by_label("out_features").fill("6")
    edited.get_by_label("out_features").press("Enter")
    expander(pg, "[0] Linear 6 ").wait_for()
    settle(pg)
    assert expander(pg, "[0] Linear 6 ").get_by_label("out_features").is_visible()
    pg.screenshot(path=str(ARTIFACTS / "build-panel-open-after-edit.png"))

    expander(pg, "[0] Linear 6 ").get_by_role("button", name="Delete").click()
    expander(pg, "[0] Linear 6 ").wait_for(state="detached")
    settle(pg)
    pg.locator('[data-testid="stSidebar"]').get_by_role("button", name="Undo").click()
    expander(pg, "[0] Linear 6 ").wait_for()
    settle(pg)
    assert address_preset(pg)["model"]["layers"][0] == {"type": "Linear", "out_features": 6}

    pg.reload()
    wait_for_app(pg)
    expander(pg, "[0] Linear 6 ").wait_for()
    # the address survives a switch of page, and a reload there keeps the model too
    pg.locator('[data-testid="stSidebarNav"]').get_by_text("Train", exact=True).click()
    pg.wait_for_url("**/train?**")
    settle(pg)
    assert address_preset(pg)["model"]["layers"][0] == {"type": "Linear", "out_features": 6}
    pg.reload()
    wait_for_app(pg)
    pg.locator('[data-testid="stSidebarNav"]').get_by_text("Build", exact=True).click()
    expander(pg, "[0] Linear 6 ").wait_for()
    settle(pg)
    pg.screenshot(path=str(ARTIFACTS / "build-after-reloads.png"))


def test_a_classroom_link_to_train_opens_without_the_page_not_found_modal(app_url, page):  # noqa: F811
    doc = gallery.raw("vanishing-sigmoid")
    doc["classroom"] = {"hide_pages": ["build", "landscape"]}
    pg = page
    pg.goto(f"{app_url}/train?{share.PARAM}={share.encode(validate(doc))}")
    wait_for_app(pg)
    pg.get_by_role("heading", name="Train").first.wait_for()
    pg.wait_for_timeout(500)  # the modal, when there is one, comes right after the first run
    pg.screenshot(path=str(ARTIFACTS / "classroom-link.png"))
    assert pg.get_by_text("does not seem to exist").count() == 0
    menu = pg.locator('[data-testid="stSidebarNav"]')
    assert menu.get_by_text("Train", exact=True).count() == 1
    assert menu.get_by_text("Build", exact=True).count() == 0
    assert menu.get_by_text("Landscape", exact=True).count() == 0


def test_a_panel_of_a_large_model_stays_open_while_its_arguments_are_edited(app_url, page):  # noqa: F811
    """Over 50 layers the page draws a panel's content only while it is open (LAZY), through a stateful expander."""
    doc = gallery.raw("xor")
    doc["model"]["layers"] = [{"type": "Linear", "out_features": 8}, {"type": "Tanh"}] * 30 + [{"type": "Linear", "out_features": 2}]
    pg = page
    pg.goto(f"{app_url}/?{share.PARAM}={share.encode(validate(doc))}")
    wait_for_app(pg)
    expander(pg, "[0] Linear 8 ").locator("summary").click()
    out = expander(pg, "[0] Linear 8 ").get_by_label("out_features")
    out.fill("5")
    out.press("Enter")
    edited = expander(pg, "[0] Linear 5 ")
    edited.wait_for()
    settle(pg)
    assert edited.get_by_label("out_features").is_visible()


def test_a_preset_too_long_for_the_address_survives_a_reload_under_its_short_id(app_url, page):  # noqa: F811
    import random

    rng = random.Random(1)  # sizes that do not repeat, so the token does not compress below a safe link
    doc = gallery.raw("xor")
    doc["name"] = "Long enough for an id"
    doc["model"]["layers"] = [{"type": "Linear", "out_features": rng.randint(2, 60)} for _ in range(700)] + [{"type": "Linear", "out_features": 2}]
    token = share.encode(validate(doc))
    assert len(token) > share.SAFE_LINK_CHARS - 200
    pg = page
    pg.goto(f"{app_url}/?{share.PARAM}={token}")
    wait_for_app(pg)
    pg.wait_for_url(f"**?{share.ID_PARAM}=*")
    assert share.PARAM not in parse_qs(urlparse(pg.url).query)
    pg.reload()
    wait_for_app(pg)
    pg.locator('[data-testid="stSidebar"]').get_by_text("Long enough for an id").wait_for()
    assert pg.get_by_text("does not have").count() == 0
