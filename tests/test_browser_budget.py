"""A stranger's link can't take the server down: a server under a memory cap opens presets whose feature maps and loss
surface would need many gigabytes, refuses or shrinks those computations with a sentence, still answers its health
check, and another browser session still works.

The cap is a memory cgroup around the server and its workers when this machine lets the test make one (then a
computation that outgrew it would have the kernel kill the server, as it did before the budgets), else an address-space
limit on the server process (then the allocation fails inside it)."""

import os
import resource
import time
import uuid
from pathlib import Path

import pytest
from browser_util import ARTIFACTS, _healthy, page, serve, settle, wait_for_app  # noqa: F401  (page is a fixture)

from dlviz.model import budget
from dlviz.model.build import summarize
from dlviz.preset import share
from dlviz.preset.schema import validate

pytestmark = pytest.mark.browser

CAP = 3_000_000_000  # bytes for the server, its forkserver and its workers together
MNIST = {"data": {"name": "mnist", "batch_size": 32}, "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.1}}


def link_doc(layers) -> dict:
    return {"format": "dlviz-preset/1", "name": "big", "seed": 0, "model": {"input_shape": [1, 28, 28], "layers": layers}, **MNIST}


HEAD = [{"type": "AdaptiveAvgPool2d", "output_size": 1}, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]
# Inspect: every one of the 40 ReLUs keeps its own 1,275 × 112 × 112 output: about 5 GB of feature maps
INSPECT = link_doc(
    [{"type": "Upsample", "scale_factor": 4}, {"type": "Conv2d", "out_channels": 1275, "kernel_size": 3, "padding": 1}]
    + [{"type": "ReLU"} for _ in range(40)]
    + HEAD
)
# Landscape: 5,102 channels of 26 × 26 per sample, on an evaluation batch of 1,000 samples: about 14 GB in one pass
LANDSCAPE = link_doc([{"type": "Conv2d", "out_channels": 5102, "kernel_size": 3}] + HEAD)


def _cgroup_dir() -> Path | None:
    """A fresh memory cgroup (v2 or v1) below this process's own, or None where the machine does not allow one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, where = line.split(":", 2)
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            base = Path("/sys/fs/cgroup") / where.lstrip("/")
            limit_file = "memory.max"
        elif "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / where.lstrip("/")
            limit_file = "memory.limit_in_bytes"
        else:
            continue
        group = base / f"dlviz-test-{uuid.uuid4().hex[:8]}"
        try:
            group.mkdir()
            (group / limit_file).write_text(str(CAP))
            return group
        except OSError:
            if group.exists():
                group.rmdir()
    return None


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory):
    """(URL, how it is capped) of a `streamlit run app.py` server under CAP."""
    env = {**os.environ, "DLVIZ_DATA_DIR": str(tmp_path_factory.mktemp("data")), "DLVIZ_MAX_SURFACE_FLOPS": "20000000000"}
    group = _cgroup_dir()

    def confine():
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        else:  # torch and its threads reserve much address space they never touch: allow that, not the gigabytes
            resource.setrlimit(resource.RLIMIT_AS, (6 * CAP, 6 * CAP))

    try:
        with serve(tmp_path_factory.mktemp("streamlit"), env, preexec_fn=confine, timeout=120) as (url, proc):
            yield url, ("a memory cgroup" if group is not None else "an address-space limit"), proc
    finally:
        if group is not None:
            for _ in range(50):  # the cgroup empties once the forkserver has gone too
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def test_the_links_are_valid_and_far_over_the_budget():
    inspect = budget.footprint(summarize(validate(INSPECT)))
    assert budget.feature_maps_bytes(inspect) > 4e9
    landscape = budget.footprint(summarize(validate(LANDSCAPE)))
    assert 1000 * budget.forward_bytes_per_sample(landscape) > 10e9


def _no_exception(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator('[data-testid="stException"]').first.inner_text()


def test_links_that_would_need_gigabytes_leave_the_server_up_for_everyone(capped_server, page):  # noqa: F811
    url, how, proc = capped_server
    pg = page
    ARTIFACTS.mkdir(exist_ok=True)
    pg.goto(f"{url}/inspect?{share.PARAM}={share.encode(validate(INSPECT))}")
    wait_for_app(pg, 120_000)
    pg.get_by_text("DLVIZ_MAX_COMPUTE_BYTES").first.wait_for(timeout=120_000)
    text = pg.locator('[data-testid="stAlert"]').all_inner_texts()
    assert any("The feature maps of this model would need about" in t for t in text), text
    _no_exception(pg)
    pg.screenshot(path=str(ARTIFACTS / "budget-inspect.png"), full_page=True)
    assert proc.poll() is None and _healthy(url), f"the server died under {how}"

    pg.goto(f"{url}/landscape?{share.PARAM}={share.encode(validate(LANDSCAPE))}")
    tab = pg.get_by_role("tab", name="Your network's loss surface")
    tab.wait_for(timeout=120_000)
    settle(pg)
    tab.click()
    # the full grid would not fit the budget of operations even on one sample: the page says so before it computes
    # any of it (the coarse picture is a part of the full grid, on the same samples)
    pg.get_by_text("DLVIZ_MAX_SURFACE_FLOPS").first.wait_for(timeout=240_000)
    settle(pg, 240_000)
    _no_exception(pg)
    pg.screenshot(path=str(ARTIFACTS / "budget-landscape.png"), full_page=True)
    assert proc.poll() is None and _healthy(url), f"the server died under {how}"

    # another person, in a browser of their own, still gets the app
    other = pg.context.browser.new_context().new_page()
    other.goto(url)
    wait_for_app(other, 120_000)
    other.get_by_text("Parameters").first.wait_for(timeout=60_000)
    _no_exception(other)
    other.close()
