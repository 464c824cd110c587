"""Short runs are probed often enough to draw their units over time, every probe reaches the live view, and a chart
drawn from a single probe says so."""

from dlviz.figures import train as tf
from dlviz.preset import gallery
from dlviz.training.live import KEEP_TELEMETRY, FeedCallback, LiveFeed
from dlviz.training.trainer import Trainer


def test_a_48_step_lesson_is_probed_at_every_step_and_the_live_view_keeps_the_whole_run():
    feed = LiveFeed()
    # a clock that never moves: the feed holds back everything it may, as on a machine that trains the lesson in an instant
    trainer = Trainer(gallery.load("xor"), [FeedCallback(feed.handle, clock=lambda: 0.0)])
    trainer.run()
    assert trainer.step == 48 and trainer.telemetry_every == 1
    steps = [t["step"] for t in feed.snapshot()["telemetry"]]
    assert 30 <= len(steps) <= KEEP_TELEMETRY
    assert steps[0] == 0 and steps[-1] == 47 and steps == sorted(steps)  # thinned evenly, first and last kept
    fig = tf.unit_health_figure.spec(feed.snapshot())
    assert not fig["layout"].get("annotations")
    assert fig["layout"]["title"]["text"] == "Dead and saturated units (on 256 training samples)"  # the fixed probe set


def test_a_chart_from_one_probe_says_it_has_one():
    snap = LiveFeed().snapshot()
    snap["telemetry"] = [
        {
            "step": 0,
            "layers": {"model.layers[1]": {"type": "ReLU", "dead": 0.2}},
            "histograms": {"layers[0].weight": {"weight": {"range": 1.0, "counts": [1, 2, 3]}}},
        }
    ]
    for fig in (tf.unit_health_figure.spec(snap), tf.histogram_figure.spec(snap, "layers[0].weight")):
        notes = [a["text"] for a in fig["layout"].get("annotations", [])]
        assert any("one probe" in n for n in notes), notes
    snap["telemetry"] = snap["telemetry"] * 2
    assert not any("one probe" in a["text"] for a in tf.unit_health_figure.spec(snap)["layout"].get("annotations", []))
