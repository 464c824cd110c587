"""A detector's metric, mAP@0.5 (dlviz.loop.grid_map): on a grid worked by hand, against a plain-Python VOC evaluation on
noisy grids, against the Vision tab's path, and as the metric of the trainer's epoch records and the Train page's charts."""

import math

import numpy as np
import pytest
import torch
from test_detection import iou_by_hand  # the IoU tests' own plain-Python IoU

from dlviz.analysis.detection import MAP_CONFIDENCE, detect, grid_boxes, mean_average_precision, true_boxes
from dlviz.loop import ANCHORS, CANVAS, decode_grid, grid_map, metric_key, mnist_boxes
from dlviz.runtime import mnist_digits

S, CELL = 4, CANVAS / 4
W, H = ANCHORS[1][0]  # the one anchor's shape: a box of this size has log-size 0


def logit(p):
    return math.log(p / (1 - p))


def place(grid, k, r, c, digit, dx, dy, value):
    """Write a box of the anchor's size centred at ((c + dx)·cell, (r + dy)·cell) into cell (r, c) of canvas k."""
    grid[k, 0, r, c] = value[0]
    grid[k, 1:3, r, c] = torch.tensor(value[1](dx, dy), dtype=grid.dtype)
    grid[k, 3:5, r, c] = 0.0
    grid[k, 5 + digit, r, c] = value[2]


def truth(y, k, r, c, digit, dx=0.5, dy=0.5):
    place(y, k, r, c, digit, dx, dy, (1.0, lambda a, b: (a, b), 1.0))


def predict(out, k, r, c, digit, score, dx=0.5, dy=0.5):
    """A model's logits for a box scoring `score`: σ(objectness) = score and a class softmax of 1 (to 1e-21)."""
    place(out, k, r, c, digit, dx, dy, (logit(score), lambda a, b: (logit(a), logit(b)), 50.0))


def hand_case():
    """Two canvases. Canvas 0 holds a 3 and a 7; canvas 1 a 3. The predictions:
    p1 the 3 exactly (0.9); p2 a 3 shifted 2.4 px right of p1 (0.8, IoU 0.739 with p1); p3 a 7 shifted 2.4 px down of
    p1 (0.95, IoU 0.786 with p1, 0.597 with p2, nothing with the true 7); p4 the 7 exactly (0.6);
    canvas 1: p5 the 3 exactly (0.7) and p6 a 3 on nothing (0.85). Every other cell scores about 2e-10."""
    y = torch.zeros(2, 15, S, S, dtype=torch.float64)
    out = torch.zeros(2, 15, S, S, dtype=torch.float64)
    out[:, 0] = -20.0
    truth(y, 0, 1, 1, 3, 0.9, 0.9)
    truth(y, 0, 2, 3, 7)
    truth(y, 1, 0, 0, 3)
    predict(out, 0, 1, 1, 3, 0.9, 0.9, 0.9)  # p1
    predict(out, 0, 1, 2, 3, 0.8, 0.05, 0.9)  # p2
    predict(out, 0, 2, 1, 7, 0.95, 0.9, 0.05)  # p3
    predict(out, 0, 2, 3, 7, 0.6)  # p4
    predict(out, 1, 0, 0, 3, 0.7)  # p5
    predict(out, 1, 3, 3, 3, 0.85)  # p6
    return out, y


def test_map_of_a_grid_worked_by_hand():
    out, y = hand_case()
    mean, per_class = grid_map(out, y, 1)
    # NMS within each digit: p2 goes (IoU 0.739 with p1, both 3s), p3 stays beside p1.
    # 3s by score: p1 TP, p6 FP, p5 TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: AP = 1/2 + 1/2 · 2/3 = 5/6
    # 7s by score: p3 FP, p4 TP -> precision 1/2 at recall 1: AP = 1/2
    assert set(per_class) == {3, 7}
    assert per_class[3] == pytest.approx(5 / 6) and per_class[7] == pytest.approx(1 / 2)
    assert mean == pytest.approx(2 / 3)
    # NMS across digits, as the Vision tab's slider applies it: p3 (0.95) removes p1 and p2, so the 3s score
    # p6 FP, p5 TP -> AP = 1/2 · 1/2 = 1/4, and the mean (1/4 + 1/2) / 2
    mean, per_class = grid_map(out, y, 1, classwise=False)
    assert per_class[3] == pytest.approx(1 / 4) and per_class[7] == pytest.approx(1 / 2) and mean == pytest.approx(3 / 8)


def test_the_hand_case_places_the_boxes_it_says():
    out, y = hand_case()
    boxes, scores, classes = decode_grid(out, 1)
    p1, p2, p3 = boxes[0, 1 * S + 1], boxes[0, 1 * S + 2], boxes[0, 2 * S + 1]
    assert p1.tolist() == pytest.approx([30.4 - W / 2, 30.4 - H / 2, 30.4 + W / 2, 30.4 + H / 2])
    assert float(scores[0, 1 * S + 1]) == pytest.approx(0.9) and int(classes[0, 2 * S + 1]) == 7
    assert p2[0] - p1[0] == pytest.approx(2.4) and p3[1] - p1[1] == pytest.approx(2.4)
    assert int((scores >= MAP_CONFIDENCE).sum()) == 6


# ---------------------------------------------------------------- against a plain-Python VOC evaluation


def voc_ap(recall, precision):
    """VOC devkit's all-point AP, as its MATLAB code writes it: sentinels, the precision envelope, the area."""
    mrec, mpre = [0.0, *recall, 1.0], [0.0, *precision, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def map_by_hand(out, y, anchors, classwise=True, nms=0.5, match=0.5):
    """Per canvas: the boxes scoring at least MAP_CONFIDENCE, greedy NMS (per digit or over all), then matching in order
    of score to the best-overlapping unmatched true box of the digit; per digit over all canvases: VOC's AP."""
    boxes, scores, classes = (v.tolist() for v in decode_grid(out.double(), anchors))
    tb, to, tc = (v.tolist() for v in decode_grid(y.double(), anchors, target=True))
    found, totals = {}, {}
    for k in range(len(boxes)):
        real = [j for j in range(len(to[k])) if to[k][j] > 0.5]
        for j in real:
            totals[tc[k][j]] = totals.get(tc[k][j], 0) + 1
        left = sorted((i for i in range(len(scores[k])) if scores[k][i] >= MAP_CONFIDENCE), key=lambda i: -scores[k][i])
        kept = []
        while left:
            best = left.pop(0)
            kept.append(best)
            left = [i for i in left if (classwise and classes[k][i] != classes[k][best]) or iou_by_hand(boxes[k][best], boxes[k][i]) <= nms]
        taken = set()
        for i in sorted(kept, key=lambda i: -scores[k][i]):
            options = [(iou_by_hand(boxes[k][i], tb[k][j]), j) for j in real if tc[k][j] == classes[k][i] and j not in taken]
            v, j = max(options, default=(0.0, None))
            hit = j is not None and v >= match
            if hit:
                taken.add(j)
            found.setdefault(classes[k][i], []).append((scores[k][i], hit))
    per_class = {}
    for c, total in totals.items():
        tp = fp = 0
        recall, precision = [], []
        for _, hit in sorted(found.get(c, []), key=lambda d: -d[0]):
            tp, fp = tp + hit, fp + (not hit)
            recall.append(tp / total)
            precision.append(tp / (tp + fp))
        per_class[c] = voc_ap(recall, precision)
    return sum(per_class.values()) / len(per_class), per_class


def noisy_grids(seed, n=40, anchors=1, max_digits=3, noise=1.5):
    """Canvases' true grids and a detector's logits made from them with noise: hits, misses, duplicates and wrong digits."""
    images, labels = mnist_digits()
    _, y = mnist_boxes(images, labels, n, S, anchors, max_digits, np.random.default_rng(seed))
    y = torch.from_numpy(y).double()
    g = torch.Generator().manual_seed(seed)
    t = y.reshape(n, anchors, 15, S, S)
    out = torch.empty_like(t)
    out[:, :, 0] = 6 * t[:, :, 0] - 3
    out[:, :, 1:3] = torch.logit(t[:, :, 1:3].clamp(0.05, 0.95))
    out[:, :, 3:5] = t[:, :, 3:5]
    out[:, :, 5:] = 4 * t[:, :, 5:]
    scale = torch.tensor([1.0, 0.2, 0.2, 0.1, 0.1] + [1.0] * 10, dtype=torch.float64)[:, None, None]  # boxes near their digit's
    out = out + noise * scale * torch.randn(out.shape, generator=g, dtype=torch.float64)
    return out.reshape(n, -1, S, S), y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("classwise", [True, False])
def test_map_matches_a_plain_python_voc_evaluation(seed, classwise):
    out, y = noisy_grids(seed, anchors=1 + seed % 3)
    anchors = 1 + seed % 3
    mean, per_class = grid_map(out, y, anchors, classwise=classwise)
    ref_mean, ref = map_by_hand(out, y, anchors, classwise=classwise)
    assert per_class.keys() == ref.keys()
    assert [per_class[c] for c in sorted(ref)] == pytest.approx([ref[c] for c in sorted(ref)], abs=1e-12)
    assert mean == pytest.approx(ref_mean, abs=1e-12)
    assert 0.05 < mean < 0.95  # neither everything found nor nothing: the comparison says something


def test_map_across_digits_is_the_vision_tab_s():
    """The Vision tab scores its boxes by analysis.detection: `detect` (NMS over all digits at its slider's IoU), then
    mean_average_precision; grid_map without `classwise` gives its number."""
    out, y = noisy_grids(7)
    for nms in (0.0, 0.5):
        found = [detect(d, MAP_CONFIDENCE, nms) for d in grid_boxes(out, 1)]
        mean, per_class = mean_average_precision(found, true_boxes(y, 1), 10)
        got, got_per_class = grid_map(out, y, 1, nms_threshold=nms, classwise=False)
        assert got == pytest.approx(mean, abs=1e-6) and got_per_class == pytest.approx(per_class, abs=1e-6)


def test_a_perfect_detector_scores_1_and_a_blind_one_0():
    out, y = noisy_grids(3, noise=0.0)
    out[:, 5:] *= 10  # every box exactly on its digit's, its digit sure
    assert grid_map(out, y, 1)[0] == pytest.approx(1.0)
    blind = torch.full_like(out, -30.0)  # nothing scores above MAP_CONFIDENCE
    mean, per_class = grid_map(blind, y, 1)
    assert mean == 0.0 and set(per_class.values()) == {0.0}


# ---------------------------------------------------------------- the trainer and the figures


def short_detector(samples=120, epochs=1):
    from dlviz.preset import gallery

    doc = gallery.raw("detection-yolo")
    doc["data"]["num_samples"], doc["training"]["epochs"] = samples, epochs
    return doc


def test_the_trainer_s_metric_of_a_detector_is_validation_map():
    from dlviz.preset.schema import validate
    from dlviz.training.trainer import Callback, Trainer

    class Steps(Callback):
        metric = []

        def on_steps(self, trainer, block):
            self.metric.extend(block.metric.tolist())

    steps = Steps()
    tr = Trainer(validate(short_detector(epochs=2)), [steps])
    assert tr.objective.task == "detection" and tr.key == metric_key("detection") == "map" and tr.objective.anchors == 1
    result = tr.run()
    records = tr.history
    assert [sorted(r) for r in records] == [["epoch", "lr", "step", "train_loss", "val_loss", "val_map"]] * 2
    assert result["status"] == "finished" and 0 <= result["val_map"] <= 1 and "val_r2" not in result
    # the last record's mAP is the model's (left in eval mode by the epoch's end) on the validation canvases
    with torch.no_grad():
        assert grid_map(tr.model(tr.dataset.x_val), tr.dataset.y_val, 1)[0] == records[-1]["val_map"]
    assert steps.metric and all(math.isnan(v) for v in steps.metric)  # no batch is scored


def test_the_metric_chart_of_a_detector_shows_validation_map_and_says_why_only_that():
    from dlviz.figures.train import compare_figure, metric_figure

    snap = {"task": "detection", "step": np.arange(3), "metric": np.full(3, np.nan), "epochs": []}
    spec = metric_figure.spec(snap)
    assert spec["layout"]["title"]["text"] == "mAP@0.5 (validation)" and spec["data"] == []
    assert "validation canvases at each epoch's end" in spec["layout"]["annotations"][0]["text"]
    assert "first point" in spec["layout"]["annotations"][0]["text"]
    snap["epochs"] = [{"epoch": 1, "step": 3, "train_loss": 9.0, "val_loss": 8.0, "val_map": 0.25}]
    spec = metric_figure.spec(snap)
    assert [t["name"] for t in spec["data"]] == ["validation"] and "first point" not in spec["layout"]["annotations"][0]["text"]
    assert compare_figure.spec({"a": snap["epochs"]}, "val_map")["layout"]["title"]["text"] == "val mAP@0.5"


def test_the_live_view_of_a_detector_run_draws_and_states_its_validation_map():
    from dlviz.figures.train import metric_figure
    from dlviz.preset.schema import validate
    from dlviz.training.diagnose import score_lines
    from dlviz.training.live import FeedCallback, LiveFeed
    from dlviz.training.trainer import Trainer

    feed = LiveFeed()
    Trainer(validate(short_detector(epochs=2)), [FeedCallback(feed.handle)]).run()
    snap = feed.snapshot()
    assert snap["task"] == "detection" and len(snap["epochs"]) == 2
    spec = metric_figure.spec(snap)
    (trace,) = spec["data"]
    assert trace["name"] == "validation" and spec["layout"]["yaxis"]["title"]["text"] == "mAP@0.5"
    last = snap["epochs"][-1]["val_map"]
    assert 0 <= last <= 1
    assert any(line.startswith(f"Epoch 2: mAP@0.5 {last:.3f} on the validation canvases") for line in score_lines(snap))
