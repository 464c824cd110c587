"""The server settings a live, shared Train page depends on (.streamlit/config.toml; see its comments for the figures)."""

import tomllib
from pathlib import Path

CONFIG = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())


def test_no_full_garbage_collection_after_every_script_run():
    # ~120 ms of the server's Python thread per fragment rerun with torch, plotly and pandas loaded: one live page
    # reruns six times a second
    assert CONFIG["runner"]["postScriptGC"] is False


def test_the_browser_does_not_keep_every_chart_it_drew():
    # overtaken fragment runs never age their cached messages out; every redraw request then carries their hashes
    assert CONFIG["global"]["minCachedMessageSize"] >= 1e9


def test_uploads_are_capped():
    assert 0 < CONFIG["server"]["maxUploadSize"] <= 50


def test_an_unforeseen_exception_shows_no_message_or_traceback():
    # "type" keeps Streamlit's exception element (and the tests that look for it) but drops the message and the
    # traceback, which carry server paths and a preset's values
    assert CONFIG["client"]["showErrorDetails"] == "type"
