"""The board's live frames over plain HTTP: while a Playground run trains, the browser asks for its newest frame about
ten times a second, and the answer skips Streamlit's script runs entirely (a rerun of the page at that rate would cost
the server more than the training itself on a small machine).

`streamlit run app.py` mounts ROUTES beside Streamlit's own (st.App's `routes`); a page served without them (AppTest,
`streamlit run streamlit_app.py`) sends the frames with its reruns instead, which `served()` tells it."""

from __future__ import annotations

import json
import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PATH = "dlviz/frame"  # relative: the browser resolves it against the page's address, under any base path
_served = False


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


async def frame(request: Request) -> Response:
    """The newest frame of a run this server trains: 200 with the frame, 204 when it is the version the browser has (or
    none is drawn yet), 404 for a run this server does not know (trained by another replica, or gone with a restart)."""
    from dlviz_app import runs

    runner = runs.runner()
    h = runner.handle(request.path_params["run_id"])
    if h is None:
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    runner.touch(h.session)  # the board asking is its page being open: the run is not a closed session's
    f = h.feed.frame
    # a run whose worker has not drawn its first frame yet answers "unchanged": the board asks again
    if f is None or str(f.get("version")) == request.query_params.get("v"):
        return Response(status_code=204, headers={"Cache-Control": "no-store"})
    body = json.dumps({k: _finite(v) for k, v in f.items()}, allow_nan=False)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    """The routes to mount; calling it tells the pages that the browser can fetch frames itself."""
    global _served
    _served = True
    return [Route(f"/{PATH}/{{run_id}}", frame, methods=["GET"])]


def served() -> bool:
    return _served
