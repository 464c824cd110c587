"""The board's frame route: the newest frame of a run as JSON, "unchanged" when the browser has it or none is drawn
yet, not found for a run this server does not train; never a NaN in the JSON."""

import asyncio
import json
from types import SimpleNamespace

from starlette.requests import Request

from dlviz_app import frames, runs


def ask(run_id: str, version=None):
    query = f"v={version}".encode() if version is not None else b""
    scope = {"type": "http", "method": "GET", "path": f"/{frames.PATH}/{run_id}", "query_string": query, "headers": [], "path_params": {"run_id": run_id}}
    return asyncio.run(frames.frame(Request(scope)))


def test_the_route_answers_with_the_newest_frame_only_when_the_browser_lacks_it(monkeypatch):
    feed = SimpleNamespace(frame=None)
    handles = {"r1": SimpleNamespace(feed=feed, session="s1")}
    touched = []
    monkeypatch.setattr(runs, "runner", lambda: SimpleNamespace(handle=handles.get, touch=touched.append))
    assert ask("nope").status_code == 404
    assert ask("r1").status_code == 204  # known, nothing drawn yet: the board asks again
    feed.frame = {"version": 3, "step": 7, "train_loss": float("nan"), "weights": [[[0.5]]]}
    r = ask("r1", version=2)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert json.loads(r.body) == {"version": 3, "step": 7, "train_loss": None, "weights": [[[0.5]]]}
    assert ask("r1", version=3).status_code == 204
    assert touched == ["s1"] * 3, "each request from the board keeps its session's runs alive"


def test_the_routes_are_mounted_under_the_path_the_page_names(monkeypatch):
    monkeypatch.setattr(frames, "_served", False)  # put back after the test: other tests' pages run without the route
    (route,) = frames.routes()
    assert route.path == f"/{frames.PATH}/{{run_id}}" and frames.served()
