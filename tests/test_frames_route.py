"""The board's frame route: the newest frame of a run as JSON, "unchanged" when the browser has it or none is drawn
yet, not found for a run this server does not train; never a NaN in the JSON."""

import asyncio
import json
from types import SimpleNamespace

from starlette.requests import Request

from dlviz_app import frames, runs


def ask(run_id: str, version=None, token=None):
    query = f"v={version}".encode() if version is not None else b""
    params = {"token": token} if token is not None else {"run_id": run_id}
    scope = {"type": "http", "method": "GET", "path": f"/{frames.PATH}/x", "query_string": query, "headers": [], "path_params": params}
    return asyncio.run(frames.frame(Request(scope)))


def test_the_route_answers_with_the_newest_frame_only_when_the_browser_lacks_it(monkeypatch):
    feed = SimpleNamespace(frame=None)
    handles = {"r1": SimpleNamespace(feed=feed, session="s1", alive=True)}
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


def test_the_follow_address_answers_with_the_sessions_live_run_only(monkeypatch):
    feed = SimpleNamespace(frame={"version": 1, "step": 0})
    handles = {"old": SimpleNamespace(feed=SimpleNamespace(frame={"version": 9, "step": 900}), session="s1", alive=False), "new": None}
    monkeypatch.setattr(runs, "runner", lambda: SimpleNamespace(handle=handles.get, touch=lambda s: None))
    monkeypatch.setattr(frames, "_follow", type(frames._follow)())
    assert ask("", token="t1").status_code == 204  # no run yet: the board asks again
    frames.follow("t1", "old")
    assert ask("", token="t1").status_code == 204  # an ended run's last frame is never drawn as the new one's
    handles["new"] = SimpleNamespace(feed=feed, session="s1", alive=True)
    frames.follow("t1", "new")
    r = ask("", token="t1")
    assert r.status_code == 200 and json.loads(r.body) == {"version": 1, "step": 0}
    assert ask("", token="t2").status_code == 204  # another session's token knows nothing of it
    monkeypatch.setattr(frames, "FOLLOWED", 2)
    frames.follow("a", "new"), frames.follow("b", "new")
    assert list(frames._follow) == ["a", "b"], "the oldest sessions are forgotten past FOLLOWED"


def test_the_routes_are_mounted_under_the_path_the_page_names(monkeypatch):
    monkeypatch.setattr(frames, "_served", False)  # put back after the test: other tests' pages run without the route
    follow, own = frames.routes()
    assert own.path == f"/{frames.PATH}/{{run_id}}" and follow.path == f"/{frames.PATH}/follow/{{token}}" and frames.served()
