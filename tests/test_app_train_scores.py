"""The Train page shows the penalty beside the data loss and the test split's score (AppTest)."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dlviz_app import runs

APP = Path(__file__).resolve().parent.parent / "app.py"


@pytest.fixture
def at():
    assert runs.runner().ready.wait(180), "the training workers did not start"
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    app.switch_page("app_pages/train.py").run()
    assert not app.exception
    return app


def test_the_page_shows_data_loss_penalty_total_and_the_test_score(at):
    doc = dict(at.session_state["preset"])
    doc["data"] = {**doc["data"], "test_fraction": 0.2}
    doc["training"] = {**doc.get("training", {}), "epochs": 3, "l2": 0.01}
    at.session_state["preset"] = doc
    at.run()
    next(b for b in at.button if b.label == "Train").click().run()
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
