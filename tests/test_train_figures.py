"""The Train page's charts: plotly validates every spec the live page sends, the packed arrays carry the run's own
numbers, and what the browser receives from a spec is what plotly would send for the same figure."""
import base64
import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.io.json import to_json_plotly

from dlviz import gallery, train_figures as tf
from dlviz.live import FeedCallback, LiveFeed
from dlviz.spec import validate
from dlviz.train import Trainer

DTYPES = {"f8": np.float64, "f4": np.float32, "i4": np.int32, "i1": np.int8, "i2": np.int16, "u1": np.uint8, "u2": np.uint16}


def unpack(v):
    """A plotly.js typed array back to numbers; anything else as it is."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=DTYPES[v["dtype"]])
        return a.reshape([int(n) for n in v["shape"].split(",")]) if "shape" in v else a
    return v


def plain(o):
    """A figure's JSON with every typed array decoded to a list of floats (NaN as None), for comparing encodings."""
    if isinstance(o, dict) and "bdata" in o:
        return plain(unpack(o).astype(float).tolist())
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    if isinstance(o, list):
        return [plain(v) for v in o]
    if isinstance(o, float):
        return None if math.isnan(o) else round(o, 6)
    return o


def snapshot(name: str, epochs: int = 3, **data) -> dict:
    doc = gallery.raw(name)
    doc["training"]["epochs"] = epochs
    doc["data"].update(data)
    feed = LiveFeed()
    Trainer(validate(doc), [FeedCallback(feed.handle)]).run()
    return feed.snapshot()


@pytest.fixture(scope="module")
def snaps():
    return {"classification": snapshot("spiral-tanh"), "regression": snapshot("outliers-huber", 2), "empty": LiveFeed().snapshot()}


def charts(snap):
    """Every chart the Train page draws from a snapshot, as (name, builder, arguments)."""
    out = [("loss", tf.loss_figure, (snap,)), ("metric", tf.metric_figure, (snap,)), ("grad", tf.grad_norm_figure, (snap,)),
           ("ratio", tf.update_ratio_figure, (snap,)), ("health", tf.unit_health_figure, (snap,))]
    if snap.get("boundary"):
        out.append(("boundary", tf.boundary_figure, (snap["boundary"], snap["points"], snap["task"])))
    ev = snap.get("evaluation") or {}
    if "confusion" in ev:
        out.append(("confusion", tf.confusion_figure, (ev,)))
    elif ev:
        out.append(("fit", tf.fit_figure, (ev,)))
    for name in [n for n in snap["param_names"] if n.endswith("weight")][:1]:
        out += [("hist", tf.histogram_figure, (snap, name, "weight")), ("hist-grad", tf.histogram_figure, (snap, name, "grad"))]
    out.append(("compare", tf.compare_figure, ({"a": snap["epochs"], "b": snap["epochs"][:1]}, "val_loss")))
    return out


@pytest.mark.parametrize("case", ["classification", "regression", "empty"])
def test_every_live_spec_is_a_figure_plotly_accepts_and_sends_unchanged(snaps, case):
    snap = snaps[case]
    for name, build, args in charts(snap):
        spec = build.spec(*args)
        fig = go.Figure(spec)  # plotly's validators reject any property or value that plotly.js does not know
        assert isinstance(build(*args), go.Figure)
        sent = plain(json.loads(to_json_plotly(spec)))
        reference = plain(json.loads(fig.to_json()))
        assert sent == reference, f"{case} {name}: the live page would send another figure than plotly's own"


def test_packed_arrays_carry_the_snapshot_numbers(snaps):
    snap = snaps["classification"]
    loss = tf.loss_figure.spec(snap)["data"][0]
    assert np.array_equal(unpack(loss["x"]), snap["step"]) and np.array_equal(unpack(loss["y"]), snap["loss"])
    b = snap["boundary"]
    heat, train_pts = tf.boundary_figure.spec(b, snap["points"], "classification")["data"][:2]
    z = unpack(heat["z"])
    assert z.shape == (len(b["y"]), len(b["x"])) and np.allclose(z, np.asarray(b["z"]), atol=1e-6)
    assert unpack(train_pts["marker"]["color"]).tolist() == snap["points"]["train_labels"]
    grad = tf.grad_norm_figure.spec(snap)["data"]
    weights = [i for i, n in enumerate(snap["param_names"]) if not n.rsplit(".", 1)[-1].startswith("bias")]
    assert len(grad) == len(weights)
    assert np.allclose(np.log10(unpack(grad[0]["y"])), snap["log_grad_norm"][:, weights[0]])


def test_typed_arrays_follow_plotlyjs_types():
    assert tf._packed(np.array([1, 2, 3], dtype=np.int64))["dtype"] == "i4"  # plotly.js has no 64-bit integers
    assert tf._packed(np.array([2**40], dtype=np.int64))["dtype"] == "f8"
    assert tf._packed(np.ones((2, 3), dtype=np.float32)) == {"dtype": "f4", "bdata": base64.b64encode(np.ones(6, np.float32)).decode(),
                                                            "shape": "2, 3"}
    assert tf._packed(np.array([], dtype=float)).size == 0 and tf._packed([1, 2]) == [1, 2] and tf._packed(np.array(["a"])).tolist() == ["a"]


def test_band_labels_sit_on_their_bands_on_a_log_axis(snaps):
    """plotly.js places an annotation on a log axis by log10 of its value: a label given 1e-2 would float at 10^0.01."""
    layout = tf.update_ratio_figure.spec(snaps["classification"])["layout"]
    (band, line), (label,) = layout["shapes"], layout["annotations"]
    assert layout["yaxis"]["type"] == "log"
    assert (band["y0"], band["y1"]) == (1e-4, 1e-2) and 10 ** label["y"] == pytest.approx(band["y1"])
    assert line["y0"] == line["y1"] == 1e-3
