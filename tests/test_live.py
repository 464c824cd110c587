"""The live feed: bounded series that keep the shape of the curve, and snapshots rebuilt from the store."""

import numpy as np

from dlviz.preset.schema import validate
from dlviz.training.live import MAX_POINTS, Decimator, FeedCallback, LiveFeed, snapshot_from_store
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

PRESET = {
    "format": "dlviz-preset/1",
    "name": "live",
    "seed": 1,
    "data": {"name": "circle", "num_samples": 300, "batch_size": 10},
    "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 8}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]},
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.03},
    "training": {"epochs": 30},
}


def test_decimator_is_bounded_and_keeps_means():
    d = Decimator(2, cap=100)
    rows = np.column_stack([np.arange(10_000), np.sin(np.arange(10_000) / 500)])
    for chunk in np.array_split(rows, 37):
        d.add(chunk)
    v = d.values()
    assert 50 <= len(v) <= 100
    assert np.all(np.diff(v[:, 0]) > 0)
    # bucket means of a smooth curve stay on the curve
    assert np.max(np.abs(v[:, 1] - np.sin(v[:, 0] / 500))) < 0.05
    assert v[:, 0].min() < 200 and v[:, 0].max() > 9_500


def test_feed_follows_a_run_with_bounded_memory():
    from dlviz.training.trainer import Callback

    feed = LiveFeed()
    losses = []

    class All(Callback):
        def on_steps(self, trainer, block):
            losses.extend(block.loss)

    tr = Trainer(validate(PRESET), [FeedCallback(feed.handle), All()])
    result = tr.run()
    snap = feed.snapshot()
    assert tr.step > MAX_POINTS and len(snap["step"]) <= MAX_POINTS
    assert snap["result"] == result and snap["status"] == "finished"
    assert len(snap["epochs"]) == 30 and snap["steps_done"] == tr.step
    assert snap["log_grad_norm"].shape[1] == len(tr.param_names)
    assert np.array(snap["boundary"]["z"]).shape == (60, 60)
    assert len(snap["points"]["train"]) == len(snap["points"]["train_labels"]) > 0
    assert snap["evaluation"]["confusion"] and sum(map(sum, snap["evaluation"]["confusion"])) == len(tr.dataset.y_val)
    # bucket means keep the level of the curve: the shown losses average like all of them
    assert np.isclose(np.mean(snap["loss"]), np.mean(losses), rtol=0.05) and snap["loss"][-1] < snap["loss"][0]


def test_snapshot_from_store_matches_the_live_one(store_url):
    exp = validate({**PRESET, "training": {"epochs": 5}})
    store = RunStore(store_url)
    rid = store.create_run(exp)
    feed = LiveFeed()
    Trainer(exp, [StoreCallback(store, rid), FeedCallback(feed.handle)]).run()
    live, stored = feed.snapshot(), snapshot_from_store(store, rid)
    assert stored["status"] == "finished" and stored["result"] == live["result"]
    np.testing.assert_allclose(stored["loss"], live["loss"], rtol=1e-6)
    assert stored["epochs"] == live["epochs"]
    assert stored["evaluation"] == live["evaluation"]
    np.testing.assert_allclose(stored["boundary"]["z"], live["boundary"]["z"], rtol=1e-5, atol=1e-6)


def test_steps_and_epochs_are_sent_gathered_first_block_at_once_and_nothing_lost():
    """A small model flushes a step block and ends an epoch a hundred times a second: the feed sends them gathered (one
    message per FEED_SECONDS), the first block at once (the first point on the chart), and every step and epoch arrives."""
    from dlviz.training.trainer import Callback

    # probes read the clock too: left at one per run, the clock's ticks are the steps' and epochs' own
    exp = validate({**PRESET, "training": {"epochs": 30, "telemetry_every": 1000}})
    sent, flushed = [], []

    class Blocks(Callback):
        def on_steps(self, trainer, block):
            flushed.append(len(sent))  # messages sent before this block reached the feed

    ticks = iter(range(1_000_000))
    tr = Trainer(exp, [Blocks(), FeedCallback(sent.append, clock=lambda: next(ticks) * 0.002)])  # 2 ms a look
    tr.run()
    steps = [m for m in sent if m["kind"] == "steps"]
    epochs = [r for m in sent if m["kind"] == "epochs" for r in m["records"]]
    assert any(m["kind"] == "steps" for m in sent[: flushed[1]]), "the first block goes out before the second is flushed"
    assert len(steps) < len(flushed) / 2, "the others are gathered"
    assert np.array_equal(np.concatenate([m["block"]["step"] for m in steps]), np.arange(tr.step))
    assert epochs == tr.history
    feed = LiveFeed()
    for m in sent:
        feed.handle(m)
    assert feed.steps_done == tr.step and len(feed.epochs) == 30
