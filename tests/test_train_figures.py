"""The Train page's charts: plotly validates every spec the live page sends, the packed arrays carry the run's own
numbers, and what the browser receives from a spec is what plotly would send for the same figure."""

import base64
import json
import math
import warnings

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.io.json import to_json_plotly

from dlviz.figures import train as tf
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.live import FeedCallback, LiveFeed
from dlviz.training.trainer import Trainer

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
    return {
        "classification": snapshot("spiral-tanh"),
        "regression": snapshot("outliers-huber", 2),
        "penalty": snapshot("overfit-l2", 2),
        "empty": LiveFeed().snapshot(),
    }


def charts(snap):
    """Every chart the Train page draws from a snapshot, as (name, builder, arguments)."""
    out = [
        ("loss", tf.loss_figure, (snap,)),
        ("metric", tf.metric_figure, (snap,)),
        ("grad", tf.grad_norm_figure, (snap,)),
        ("grad-layer", tf.grad_by_layer_figure, (snap,)),
        ("ratio", tf.update_ratio_figure, (snap,)),
        ("lr", tf.lr_figure, (snap,)),
        ("health", tf.unit_health_figure, (snap,)),
    ]
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


@pytest.mark.parametrize("case", ["classification", "regression", "penalty", "empty"])
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
    assert tf._packed(np.ones((2, 3), dtype=np.float32)) == {"dtype": "f4", "bdata": base64.b64encode(np.ones(6, np.float32)).decode(), "shape": "2, 3"}
    assert tf._packed(np.array([], dtype=float)).size == 0 and tf._packed([1, 2]) == [1, 2] and tf._packed(np.array(["a"])).tolist() == ["a"]


def test_band_labels_sit_on_their_bands_on_a_log_axis(snaps):
    """plotly.js places an annotation on a log axis by log10 of its value: a label given 1e-2 would float at 10^0.01."""
    layout = tf.update_ratio_figure.spec(snaps["classification"])["layout"]
    (band, line), (label,) = layout["shapes"], layout["annotations"]
    assert layout["yaxis"]["type"] == "log"
    assert (band["y0"], band["y1"]) == (1e-4, 1e-2) and 10 ** label["y"] == pytest.approx(band["y1"])
    assert line["y0"] == line["y1"] == 1e-3


def layered(log_norms: np.ndarray) -> dict:
    """A snapshot of a run whose weight tensors (one column each, first layer first) had these log10 gradient norms;
    every layer has a bias too, whose norm the charts leave out."""
    steps, layers = log_norms.shape
    names = [f"layers[{2 * j}].{kind}" for j in range(layers) for kind in ("weight", "bias")]
    both = np.repeat(log_norms, 2, axis=1)
    both[:, 1::2] = 5.0  # biases far from the weights: were they drawn, the axis would reach them
    return {"param_names": names, "step": np.arange(steps), "log_grad_norm": both, "log_update_ratio": both - 3}


def sigmoid_stack(steps: int = 200, layers: int = 11) -> np.ndarray:
    """Each layer's gradient half the next one's, as the vanishing-sigmoid lesson says, with batch-to-batch jitter."""
    jitter = np.random.default_rng(0).normal(0, 0.1, (steps, layers))
    return np.log10(0.5) * np.arange(layers - 1, -1, -1)[None, :] - 0.5 + jitter


def test_the_gradient_chart_fits_its_axis_to_the_run_and_tells_its_layers_apart():
    snap = layered(sigmoid_stack())
    logs = snap["log_grad_norm"][:, ::2]
    for build, key in ((tf.grad_norm_figure, "log_grad_norm"), (tf.update_ratio_figure, "log_update_ratio")):
        spec = build.spec(snap)
        lo, hi = spec["layout"]["yaxis"]["range"]
        data = snap[key][:, ::2]
        # the eleven layers span 3.0 decades: a fixed 1e-12…1e12 axis drew them as one band a tenth of its height
        assert lo <= data.min() and hi >= data.max() and hi - lo < (data.max() - data.min()) + 3
        colors = [t["line"]["color"] for t in spec["data"]]
        assert len(colors) == logs.shape[1] == len(set(colors)), "each layer its own colour"
        assert [t["name"].split(" · ")[0] for t in spec["data"]] == [str(j) for j in range(1, 12)]
        legend = spec["layout"]["legend"]
        assert legend["orientation"] == "v" and legend["x"] >= 1, "the legend sits beside the plot, clear of the step axis's title"
    # the vanishing band is 1.3 decades below the first layer: it shows, cut at the axis, as context
    (band, *_), (note, *_) = tf.grad_norm_figure.spec(snap)["layout"]["shapes"], tf.grad_norm_figure.spec(snap)["layout"]["annotations"]
    lo = tf.grad_norm_figure.spec(snap)["layout"]["yaxis"]["range"][0]
    assert band["y1"] == pytest.approx(1e-5) and band["y0"] == pytest.approx(10**lo) and note["text"] == "vanishing"
    # a healthy run far from both bands: neither stretches its axis
    healthy = tf.grad_norm_figure.spec(layered(np.zeros((50, 3)) - 1))["layout"]
    assert not healthy.get("shapes") and healthy["yaxis"]["range"][1] - healthy["yaxis"]["range"][0] < 1


def test_the_layer_view_shows_the_ratio_of_the_last_layer_to_the_first():
    log_norms = sigmoid_stack()
    spec = tf.grad_by_layer_figure.spec(layered(log_norms))
    *earlier, latest = spec["data"]
    assert len(earlier) == tf.MOMENTS - 1 and latest["name"].endswith("(latest)")
    x, y = unpack(latest["x"]), unpack(latest["y"])
    assert x.tolist() == list(range(1, 12))
    assert np.allclose(np.log10(y), np.median(log_norms[-10:], axis=0)), "the median of the run's last twentieth"
    ratio = y[-1] / y[0]
    assert ratio == pytest.approx(2**10, rel=0.2)
    assert f"latest: the last layer's gradient is {ratio:,.0f}× the first's" in [a["text"] for a in spec["layout"]["annotations"]]
    ticks = spec["layout"]["xaxis"]["ticktext"]
    assert ticks[0] == "1 · layers[0]" and ticks[-1] == "11 · layers[20]"
    lo, hi = spec["layout"]["yaxis"]["range"]
    assert lo <= np.log10(y).min() and hi >= np.log10(y).max() and hi - lo < 6
    assert tf.grad_by_layer_figure.spec(LiveFeed().snapshot())["data"] == []


def plane(classes: int):
    """A boundary on a 21 × 21 grid over [-1, 1]²: P(class 1) = 1 right of x1 = 0 for two classes; for four, the
    class is the quadrant. Six points, none within a grid cell of a boundary, two of them labelled with another class."""
    g = np.linspace(-1, 1, 21)
    gx, gy = np.meshgrid(g, g)
    z = (gx > 0).astype(float) if classes == 2 else (gx > 0) + 2 * (gy > 0).astype(float)
    pts = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5], [0.52, 0.33], [-0.12, 0.9]])
    truth = (pts[:, 0] > 0).astype(int) if classes == 2 else (pts[:, 0] > 0) + 2 * (pts[:, 1] > 0)
    labels = truth.copy()
    labels[[1, 3]] = (labels[[1, 3]] + 1) % classes  # two points of the wrong class
    return {"x": g.tolist(), "y": g.tolist(), "z": z.tolist(), "classes": classes}, pts, labels


@pytest.mark.parametrize("classes", [2, 4])
def test_misclassified_points_are_crossed_out_on_the_boundary(classes):
    boundary, pts, labels = plane(classes)
    points = {"train": pts[:4].tolist(), "train_labels": labels[:4].tolist(), "val": pts[4:].tolist(), "val_labels": labels[4:].tolist()}
    spec = tf.boundary_figure.spec(boundary, points, "classification")
    go.Figure(spec)
    *_, wrong = spec["data"]
    assert wrong["marker"]["symbol"] == tf.MISCLASSIFIED["symbol"] and wrong["name"] == "misclassified: 2 train, 0 val"
    assert sorted(zip(unpack(wrong["x"]).tolist(), unpack(wrong["y"]).tolist())) == sorted(map(tuple, pts[[1, 3]].tolist()))
    assert all(t["marker"]["symbol"] != tf.MISCLASSIFIED["symbol"] for t in spec["data"][1:-1])
    # a regression plane has no class to get wrong
    assert all("misclassified" not in t.get("name", "") for t in tf.boundary_figure.spec(boundary, points, "regression")["data"])


def test_crossed_out_points_are_the_models_own_mistakes():
    """Next to the boundary a grid cell can disagree with the model: the crosses follow the model's predictions."""
    import torch

    from dlviz.training.live import boundary_grid, plane_points

    torch.set_num_threads(1)
    trainer = Trainer(gallery.load("xor"))
    trainer.run()  # a trained XOR boundary bends, and a coarse grid misses its corners
    ds = trainer.dataset
    b = boundary_grid(trainer.model, ds, "classification", n=5)  # a coarse grid disagrees with the model often
    pts = plane_points(ds)
    with torch.no_grad():
        trainer.model.eval()
        ref = {s: trainer.model(getattr(ds, f"x_{s}")[: len(pts[s])]).argmax(-1).numpy() for s in ("train", "val")}
    for s in ("train", "val"):
        assert b["predicted"][s] == ref[s].tolist()
    wrong = tf.boundary_figure.spec(b, pts, "classification")["data"][-1]
    expect = sum(int((ref[s] != np.asarray(pts[f"{s}_labels"])).sum()) for s in ("train", "val"))
    assert len(unpack(wrong["x"])) == expect
    grid_says = np.concatenate([tf._predicted(b, np.asarray(pts[s]), True) for s in ("train", "val")])
    assert (grid_says != np.concatenate([ref["train"], ref["val"]])).any()  # the 5 × 5 grid alone would cross out other points


def test_the_boundary_fills_its_plot_at_one_scale():
    """With the axes free to widen, a square data set left half the chart's width blank beside the grid."""
    boundary, pts, labels = plane(2)
    layout = tf.boundary_figure.spec(boundary, {"train": pts.tolist(), "train_labels": labels.tolist()}, "classification")["layout"]
    assert layout["yaxis"]["scaleanchor"] == "x" and layout["yaxis"]["scaleratio"] == 1
    assert layout["xaxis"]["constrain"] == layout["yaxis"]["constrain"] == "domain"
    assert layout["xaxis"]["range"] == pytest.approx([-1.05, 1.05]) and layout["yaxis"]["range"] == pytest.approx([-1.05, 1.05])
    assert layout["legend"]["yref"] == "container" and layout["legend"]["y"] == 0 and layout["margin"]["b"] >= 70


def test_the_layer_view_of_a_layer_with_no_gradient_says_so_without_warnings():
    """A first layer whose gradient is zero (log10: −inf), as in the zero-init lesson, has no ratio to give."""
    log_norms = np.zeros((30, 3))
    log_norms[:, 0] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = tf.grad_by_layer_figure.spec(layered(log_norms))
        tf.grad_norm_figure.spec(layered(log_norms))
    assert "latest: the first layer's gradient is 0" in [a["text"] for a in spec["layout"]["annotations"]]
    assert unpack(spec["data"][-1]["y"]).tolist() == [0.0, 1.0, 1.0]


def test_the_loss_chart_shows_the_penalty_and_the_total_beside_the_data_loss_when_there_is_one(snaps):
    snap = snaps["penalty"]
    traces = {t["name"]: t for t in tf.loss_figure.spec(snap)["data"]}
    epochs = snap["epochs"]
    assert np.allclose(unpack(traces["penalty"]["y"]), [e["train_penalty"] for e in epochs])
    assert np.allclose(unpack(traces["train total (data + penalty)"]["y"]), [e["train_loss"] + e["train_penalty"] for e in epochs])
    assert np.allclose(unpack(traces["train"]["y"]), [e["train_loss"] for e in epochs])
    assert "penalty" not in {t["name"] for t in tf.loss_figure.spec(snaps["classification"])["data"]}


def test_the_learning_rate_chart_draws_each_steps_rate_on_a_log_axis(snaps):
    snap = snaps["classification"]
    spec = tf.lr_figure.spec(snap)
    assert np.array_equal(unpack(spec["data"][0]["y"]), snap["lr"]) and spec["layout"]["yaxis"]["type"] == "log"
