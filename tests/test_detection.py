"""The detection lab's numbers: IoU by hand, NMS against a brute-force loop, mAP on a case worked by hand, the YOLO grid's
targets against the canvas's own pixels and its loss against a loop over cells."""

import math

import numpy as np
import pytest
import torch

from dlviz.analysis.detection import Detections, average_precision, box_iou, detect, intersection_union, mean_average_precision, nms, true_boxes
from dlviz.loop import ANCHORS, CANVAS, INK, YOLOLoss, decode_grid, mnist_boxes
from dlviz.runtime import mnist_digits


def iou1(a, b):
    return float(box_iou(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32))[0, 0])


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),  # the same box
        ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),  # a 1×1 overlap of two 2×2 boxes: 1 / (4 + 4 - 1)
        ([0, 0, 4, 4], [1, 1, 3, 3], 4 / 16),  # containment: the small box's area over the large one's
        ([1, 1, 3, 3], [0, 0, 4, 4], 4 / 16),
        ([0, 0, 2, 2], [2, 0, 4, 2], 0.0),  # touching along an edge
        ([0, 0, 2, 2], [2, 2, 4, 4], 0.0),  # touching at a corner
        ([0, 0, 1, 1], [5, 5, 6, 7], 0.0),  # disjoint
        ([0, 0, 3, 2], [1, 0, 4, 2], 4 / 8),  # overlap 2×2 = 4, union 6 + 6 - 4
    ],
)
def test_iou_by_hand(a, b, expected):
    assert iou1(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    "a, b",
    [
        ([1, 1, 1, 3], [0, 0, 4, 4]),  # zero width, inside a box
        ([3, 3, 1, 1], [0, 0, 4, 4]),  # negative width and height
        ([2, 2, 2, 2], [2, 2, 2, 2]),  # two identical points: the union is empty too
        ([0, 5, 4, 1], [0, 1, 4, 5]),  # negative height against the box it spans
    ],
)
def test_degenerate_boxes_have_iou_0_never_nan(a, b):
    assert iou1(a, b) == 0.0 and iou1(b, a) == 0.0
    inter, union = intersection_union(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32))
    assert float(inter) == 0.0 and float(union) >= 0


def test_iou_is_a_pairwise_matrix():
    a = torch.tensor([[0, 0, 2, 2], [0, 0, 4, 4]], dtype=torch.float32)
    b = torch.tensor([[1, 1, 3, 3], [0, 0, 2, 2], [10, 10, 11, 11]], dtype=torch.float32)
    expected = [[1 / 7, 1.0, 0.0], [4 / 16, 4 / 16, 0.0]]
    assert torch.allclose(box_iou(a, b), torch.tensor(expected))


# ---------------------------------------------------------------- NMS


def iou_by_hand(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = max(a[2] - a[0], 0) * max(a[3] - a[1], 0) + max(b[2] - b[0], 0) * max(b[3] - b[1], 0) - inter
    return inter / union if union > 0 else 0.0


def nms_by_hand(boxes, scores, threshold):
    """The textbook loop: take the best box left, drop every box overlapping it by more than the threshold, repeat."""
    left = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept, why = [], {}
    while left:
        best = left.pop(0)
        kept.append(best)
        still = []
        for j in left:
            v = iou_by_hand(boxes[best], boxes[j])
            if v > threshold:
                why[j] = (best, v)
            else:
                still.append(j)
        left = still
    return kept, why


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.8])
def test_nms_matches_the_brute_force_loop(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    n = 60
    corner = torch.rand(n, 2, generator=g) * 50
    size = torch.rand(n, 2, generator=g) * 20 + 1
    if seed == 5:  # some degenerate boxes among them
        size[::7] = 0
        size[3::9] *= -1
    boxes = torch.cat([corner, corner + size], 1).double()
    scores = torch.randperm(n, generator=g).double() / n  # distinct scores: one order
    got = nms(boxes, scores, threshold)
    kept, why = nms_by_hand(boxes.tolist(), scores.tolist(), threshold)
    assert got.kept.tolist() == kept
    for i in range(n):
        if i in why:
            assert int(got.suppressed_by[i]) == why[i][0]
            assert float(got.iou[i]) == pytest.approx(why[i][1], abs=1e-9)
        else:
            assert int(got.suppressed_by[i]) == -1 and float(got.iou[i]) == 0.0
    if seed == 5:
        degenerate = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).nonzero()[:, 0].tolist()
        assert degenerate and set(degenerate) <= set(got.kept.tolist())  # they overlap nothing, so nothing removes them


def test_nms_says_which_box_removed_which_and_by_how_much():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [0, 1, 10, 11]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.8, 0.3])
    s = nms(boxes, scores, 0.5)
    assert s.kept.tolist() == [1, 2]
    assert s.suppressed_by.tolist() == [1, -1, -1, 1]
    assert float(s.iou[0]) == pytest.approx(90 / 110)  # 9×10 shared of 100 + 100 - 90
    assert float(s.iou[3]) == pytest.approx(81 / 119)  # 9×9 shared of 100 + 100 - 81


def test_detect_keeps_confident_boxes_then_suppresses():
    d = Detections(torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.0]]), torch.tensor([0.9, 0.8, 0.1]), torch.tensor([3, 3, 4]))
    out = detect(d, 0.5, 0.5)
    assert out.scores.tolist() == [pytest.approx(0.9)] and out.classes.tolist() == [3]
    assert len(detect(d, 0.05, 0.9).boxes) == 3


# ---------------------------------------------------------------- mAP


def box(x, y, w=10, h=10):
    return [x, y, x + w, y + h]


def test_map_on_a_case_worked_by_hand():
    truth = [
        Detections(torch.tensor([box(0, 0), box(40, 40)], dtype=torch.float32), torch.ones(2), torch.tensor([0, 2])),
        Detections(torch.tensor([box(20, 20), box(0, 40)], dtype=torch.float32), torch.ones(2), torch.tensor([0, 1])),
    ]
    found = [
        Detections(
            # class 0: a hit (0.9) and a box on nothing (0.8); class 2: IoU 0.6 / 1.4 = 0.43 < 0.5, a miss
            torch.tensor([box(0, 0), box(50, 0), box(44, 40)], dtype=torch.float32),
            torch.tensor([0.9, 0.8, 0.95]),
            torch.tensor([0, 0, 2]),
        ),
        Detections(
            # class 0: a hit (0.7); class 1: a hit (0.6) and the same box again (0.5), a false positive; class 3 has no truth
            torch.tensor([box(21, 20), box(0, 40), box(0, 41), box(5, 5)], dtype=torch.float32),
            torch.tensor([0.7, 0.6, 0.5, 0.99]),
            torch.tensor([0, 1, 1, 3]),
        ),
    ]
    mean, per_class = mean_average_precision(found, truth, classes=4)
    # class 0 in score order: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1:
    # all-point AP = 1/2 · 1 + 1/2 · 2/3 = 5/6
    assert per_class[0] == pytest.approx(5 / 6)
    assert per_class[1] == pytest.approx(1.0)  # TP at recall 1, then an FP: precision at recall 1 stays 1
    assert per_class[2] == 0.0
    assert 3 not in per_class  # no true box: left out, as VOC leaves it
    assert mean == pytest.approx((5 / 6 + 1 + 0) / 3)


def test_average_precision_raises_each_precision_to_the_best_beyond():
    # precision dips then recovers: the dip is raised to the later 0.75
    ap = average_precision(torch.tensor([0.25, 0.5, 0.5, 0.75]), torch.tensor([1.0, 1.0, 0.5, 0.75]))
    assert ap == pytest.approx(0.25 * 1 + 0.25 * 1 + 0.25 * 0.75)


# ---------------------------------------------------------------- the grid


@pytest.fixture(scope="module")
def mnist():
    return mnist_digits()


@pytest.mark.parametrize("anchors", [1, 2, 3])
def test_targets_hold_the_box_around_each_digits_ink(mnist, anchors):
    images, labels = mnist
    x, y = mnist_boxes(images, labels, 40, 4, anchors, 1, np.random.default_rng(anchors))
    truth = true_boxes(torch.from_numpy(y), anchors)
    for canvas, t in zip(x, truth):
        rows, cols = np.flatnonzero((canvas[0] > INK).any(1)), np.flatnonzero((canvas[0] > INK).any(0))
        assert len(t.boxes) == 1
        assert t.boxes[0].tolist() == pytest.approx([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], abs=1e-4)
    assert x.shape == (40, 1, CANVAS, CANVAS) and y.shape == (40, anchors * 15, 4, 4)


def test_canvases_hold_up_to_three_digits_one_a_cell(mnist):
    images, labels = mnist
    x, y = mnist_boxes(images, labels, 200, 4, 1, 3, np.random.default_rng(0))
    per_canvas = y[:, 0].sum((1, 2))
    assert per_canvas.min() >= 1 and per_canvas.max() <= 3 and (per_canvas == 3).any()
    assert set(np.unique(y[:, 0])) <= {0.0, 1.0}
    assert (y[:, 5:].sum(1) == y[:, 0]).all()  # one digit one-hot where there is an object


def test_the_yolo_loss_equals_a_loop_over_cells():
    g = torch.Generator().manual_seed(0)
    b, anchors, s = 3, 2, 4
    out = torch.randn(b, anchors * 15, s, s, generator=g, dtype=torch.float64)
    target = torch.zeros(b, anchors, 15, s, s, dtype=torch.float64)
    for k, a, r, c, digit in [(0, 0, 1, 2, 3), (0, 1, 3, 3, 7), (2, 1, 0, 0, 1)]:
        target[k, a, :5, r, c] = torch.tensor([1.0, 0.3, 0.6, 0.2, -0.4])
        target[k, a, 5 + digit, r, c] = 1
    target = target.reshape(b, -1, s, s)
    fn = YOLOLoss(lambda_coord=5.0, lambda_noobj=0.5)
    total = 0.0
    for k in range(b):
        for a in range(anchors):
            for r in range(s):
                for c in range(s):
                    p = out[k, a * 15 : (a + 1) * 15, r, c].tolist()
                    t = target[k, a * 15 : (a + 1) * 15, r, c].tolist()
                    sig = 1 / (1 + math.exp(-p[0]))
                    if t[0] == 1:
                        total += -math.log(sig)
                        sx, sy = 1 / (1 + math.exp(-p[1])), 1 / (1 + math.exp(-p[2]))
                        total += 5.0 * ((sx - t[1]) ** 2 + (sy - t[2]) ** 2 + (p[3] - t[3]) ** 2 + (p[4] - t[4]) ** 2)
                        logz = math.log(sum(math.exp(v) for v in p[5:]))
                        total += -(p[5 + t[5:].index(1)] - logz)
                    else:
                        total += 0.5 * -math.log(1 - sig)
    assert float(fn(out, target)) == pytest.approx(total / b, rel=1e-10)


def test_decoding_a_models_grid_places_boxes_in_their_cells():
    s, anchors = 4, 2
    out = torch.zeros(1, anchors * 15, s, s)
    out[0, 15 + 1, 2, 3] = 10.0  # anchor 1 at row 2, column 3: centre offset x near 1
    boxes, scores, classes = decode_grid(out, anchors)
    i = (2 * s + 3) * anchors + 1  # row, column, anchor order
    cell = CANVAS / s
    w, h = ANCHORS[anchors][1]
    centre = ((3 + 1 / (1 + math.exp(-10))) * cell, (2 + 0.5) * cell)
    assert boxes[0, i].tolist() == pytest.approx([centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2])
    assert float(scores[0, i]) == pytest.approx(0.5 * 0.1)  # σ(0) times a uniform softmax over 10 digits


# ---------------------------------------------------------------- the data set


def boxes_spec(**options):
    from dlviz.preset.schema import DataSpec

    return DataSpec.model_validate({"name": "mnist-boxes", "num_samples": 60, **options})


def test_the_data_set_is_seeded_split_and_described():
    from dlviz.data.datasets import describe, load_dataset

    a, b, c = load_dataset(boxes_spec(anchors=2), 0), load_dataset(boxes_spec(anchors=2), 0), load_dataset(boxes_spec(anchors=2), 1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)
    assert (len(a.x_train), len(a.x_val)) == (48, 12)
    assert describe(boxes_spec(anchors=2, grid=8)) == ((1, 64, 64), "regression", None, (30, 8, 8))
    assert a.target_shape == (30, 4, 4) and "60 64×64 canvases" in a.note
    # the pixels come back from the normalization, and every canvas has a digit
    assert float(a.pixels(a.x_train).min()) == pytest.approx(0, abs=1e-6) and float(a.pixels(a.x_train).max()) <= 1 + 1e-6
    assert all(len(t.boxes) >= 1 for t in true_boxes(a.y_val, 2))


def test_too_many_canvases_or_a_bad_option_is_one_sentence():
    from dlviz.data.datasets import load_dataset
    from dlviz.errors import UserError
    from dlviz.preset.schema import validate

    with pytest.raises(UserError) as e:
        load_dataset(boxes_spec(num_samples=50_000), 0)
    assert e.value.path == "data.num_samples" and "DLVIZ_MAX_SAMPLES" in str(e.value)
    doc = {"format": "dlviz-preset/1", "data": {"name": "mnist-boxes", "grid": 5}, "model": {"input_shape": [1, 64, 64]}}
    with pytest.raises(UserError) as e:
        validate(doc)
    assert e.value.path == "data.grid"


def test_explain_numbers_boxes_by_score_and_says_what_nms_did():
    from dlviz.analysis.detection import explain, overlap

    d = Detections(
        torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [50, 50, 60, 60.0]]), torch.tensor([0.5, 0.9, 0.8, 0.1]), torch.tensor([1, 1, 2, 3])
    )
    rows = explain(d, 0.3, 0.5)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and [r["status"] for r in rows] == ["kept", "kept", "suppressed", "low"]
    assert rows[2]["by"] == 1 and rows[2]["iou"] == pytest.approx(90 / 110) and rows[2]["class"] == 1
    o = overlap([0, 0, 4, 4], [2, 1, 6, 3])
    assert (o["intersection"], o["union"], o["box"]) == (4.0, 20.0, [2.0, 1.0, 4.0, 3.0]) and o["iou"] == pytest.approx(0.2)
    assert overlap([0, 0, 2, 2], [2, 2, 4, 4])["box"] is None
