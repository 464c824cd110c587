"""The Train page shows the penalty beside the data loss and the test split's score (AppTest)."""

import time

from app_util import by_label
from test_app_train import at  # noqa: F401  (the Train page fixture)

from dlviz_app import runs


def test_the_page_shows_data_loss_penalty_total_and_the_test_score(at):  # noqa: F811
    doc = dict(at.session_state["preset"])
    doc["data"] = {**doc["data"], "test_fraction": 0.2}
    doc["training"] = {**doc.get("training", {}), "epochs": 3, "l2": 0.01}
    at.session_state["preset"] = doc
    at.run()
    by_label(at.button, "Train").click().run()
    assert not at.exception
    h = runs.runner().handle(at.session_state[runs.RUN_ID])
    t0 = time.time()
    while h.alive and time.time() - t0 < 120:
        time.sleep(0.1)
    assert h.feed.status == "finished", h.feed.reason
    at.run()
    assert not at.exception
    last, result = h.feed.epochs[-1], h.feed.result
    captions = [c.value for c in at.caption]
    line = next(c for c in captions if "penalty" in c)
    assert f"data loss {last['train_loss']:.4g} + penalty {last['train_penalty']:.4g} = total {last['train_total']:.4g}" in line
    test = next(c for c in captions if c.startswith("Test split"))
    assert f"accuracy {result['test_accuracy']:.1%}" in test and f"loss {result['test_loss']:.4g}" in test
