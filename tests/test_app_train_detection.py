"""The Train page scores a detector by mAP@0.5 of its validation canvases, never by the R² of its raw grid (AppTest)."""

import json

from test_app_train import at, live_charts, train_to_the_end  # noqa: F401  (the Train page fixture)

from dlviz.preset import gallery


def test_a_detector_run_shows_map_not_r2(at):  # noqa: F811
    doc = gallery.raw("detection-yolo")
    doc["data"]["num_samples"], doc["training"]["epochs"] = 120, 2
    at.session_state["preset"] = doc
    at.run()
    h = train_to_the_end(at)
    last = h.feed.epochs[-1]["val_map"]
    assert 0 <= last <= 1 and all("val_r2" not in e and "train_r2" not in e for e in h.feed.epochs)
    metric = live_charts(at)["metric"]
    assert metric["layout"]["title"]["text"] == "mAP@0.5 (validation)" and metric["layout"]["yaxis"]["title"]["text"] == "mAP@0.5"
    assert [t["name"] for t in metric["data"]] == ["validation"]  # no batch curve: the trainer scores no batch
    assert "validation canvases at each epoch's end" in metric["layout"]["annotations"][0]["text"]
    captions = [c.value.replace("\u200b", "") for c in at.caption]  # the page breaks "@" links with a zero-width space
    assert any(c.startswith(f"Epoch 2: mAP@0.5 {last:.3f} on the validation canvases") for c in captions), captions
    # Compare overlays the runs' validation mAP under its name
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "val mAP@0.5" in titles and not any("R²" in t or "r2" in t for t in titles), titles
    assert "R²" not in json.dumps(metric)
