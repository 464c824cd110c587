"""The detection lab's measures: intersection over union, non-max suppression (with why each box went), a YOLO grid's
boxes and the mean average precision at IoU 0.5 (PASCAL VOC's all-point rule), in plain torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from dlviz.loop import MAP_CONFIDENCE, average_precision, box_area, box_iou, decode_grid, intersection_union, mean_ap, suppress

__all__ = ["MAP_CONFIDENCE", "average_precision", "box_area", "box_iou", "intersection_union"]  # the kernels' own, shared with the trainer


@dataclass
class Suppression:
    """What NMS did to each box, by the box's index in the input: `kept` (indices, best score first), and for a removed
    box the index of the kept box that suppressed it and their IoU (-1 and 0 for a kept box)."""

    kept: torch.Tensor
    suppressed_by: torch.Tensor
    iou: torch.Tensor


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> Suppression:
    """Greedy non-max suppression (dlviz.loop.suppress, torchvision.ops.nms's rule): take the best remaining box, remove
    every box overlapping it by IoU > iou_threshold, repeat."""
    n = len(boxes)
    order, by, iou = (v[0] for v in suppress(boxes[None], scores[None], iou_threshold))
    suppressed_by = torch.full((n,), -1, dtype=torch.long)
    gone = by >= 0
    suppressed_by[order[gone]] = order[by[gone]]
    their_iou = torch.zeros(n, dtype=iou.dtype)
    their_iou[order[gone]] = iou[by[gone], gone.nonzero()[:, 0]]
    return Suppression(order[~gone], suppressed_by, their_iou)


@dataclass
class Detections:
    """One canvas's boxes (K, 4) in pixels, their scores and predicted classes."""

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


@torch.no_grad()
def grid_boxes(out: torch.Tensor, anchors: int) -> list[Detections]:
    """Every box a batch of model outputs (B, anchors·(5 + C), S, S) predicts, all S·S·anchors of them per canvas."""
    boxes, scores, classes = decode_grid(out.float(), anchors)
    return [Detections(b, s, c) for b, s, c in zip(boxes, scores, classes)]


@torch.no_grad()
def true_boxes(targets: torch.Tensor, anchors: int) -> list[Detections]:
    """The true boxes and digits that grid targets hold (one a cell with an object), score 1."""
    boxes, objectness, classes = decode_grid(targets.float(), anchors, target=True)
    return [Detections(b[o > 0.5], o[o > 0.5], c[o > 0.5]) for b, o, c in zip(boxes, objectness, classes)]


def detect(d: Detections, confidence: float, iou_threshold: float) -> Detections:
    """The boxes a detector reports: those scoring at least `confidence`, then NMS over them."""
    sure = d.scores >= confidence
    boxes, scores, classes = d.boxes[sure], d.scores[sure], d.classes[sure]
    kept = nms(boxes, scores, iou_threshold).kept
    return Detections(boxes[kept], scores[kept], classes[kept])


def explain(d: Detections, confidence: float, iou_threshold: float) -> list[dict]:
    """Every box of a canvas, best score first, with what became of it: {"rank" (1 for the best score), "box", "score",
    "class", "status": "kept", "suppressed" (with "by", the rank of the kept box that removed it, and their "iou") or
    "low" (below `confidence`, never seen by NMS)}."""
    order = torch.argsort(d.scores, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(order) + 1)
    sure = (d.scores >= confidence).nonzero()[:, 0]
    s = nms(d.boxes[sure], d.scores[sure], iou_threshold)
    status = {int(i): ("low", None, 0.0) for i in range(len(d.scores))}
    for j, i in enumerate(sure.tolist()):
        by = int(s.suppressed_by[j])
        status[i] = ("kept", None, 0.0) if by < 0 else ("suppressed", int(rank[sure[by]]), float(s.iou[j]))
    rows = []
    for i in order.tolist():
        what, by, iou = status[i]
        row = {"rank": int(rank[i]), "box": d.boxes[i].tolist(), "score": float(d.scores[i]), "class": int(d.classes[i]), "status": what}
        if what == "suppressed":
            row.update(by=by, iou=iou)
        rows.append(row)
    return rows


def overlap(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two xyxy boxes' intersection, union and IoU, and the intersection as a box (None when they do not overlap)."""
    ta, tb = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    inter, union = (float(v) for v in intersection_union(ta, tb))
    lo, hi = torch.maximum(ta[0, :2], tb[0, :2]), torch.minimum(ta[0, 2:], tb[0, 2:])
    box = [*lo.tolist(), *hi.tolist()] if inter > 0 else None
    return {"intersection": inter, "union": union, "iou": float(box_iou(ta, tb)[0, 0]), "box": box}


def mean_average_precision(found: list[Detections], truth: list[Detections], classes: int, iou_threshold: float = 0.5) -> tuple[float, dict[int, float]]:
    """mAP over the classes that have true boxes, and each one's AP (dlviz.loop.mean_ap, VOC's all-point rule). Per
    class, detections from every canvas in order of score are matched to the best-overlapping unmatched true box of that
    class on their canvas (IoU ≥ iou_threshold): a match is a true positive, anything else a false positive."""
    k, t = max([1, *(len(f.scores) for f in found)]), max([1, *(len(d.scores) for d in truth)])

    def padded(parts: list[Detections], width: int) -> tuple[torch.Tensor, ...]:
        boxes, scores = torch.zeros(len(parts), width, 4, dtype=torch.float64), torch.zeros(len(parts), width, dtype=torch.float64)
        labels, real = torch.zeros(len(parts), width, dtype=torch.long), torch.zeros(len(parts), width, dtype=torch.bool)
        for i, d in enumerate(parts):
            n = len(d.scores)
            boxes[i, :n], scores[i, :n], labels[i, :n], real[i, :n] = d.boxes, d.scores, d.classes, True
        return boxes, scores, labels, real

    boxes, scores, labels, reported = padded(found, k)
    true, _, true_labels, real = padded(truth, t)
    mean, per_class = mean_ap(boxes, scores, labels, reported, true, true_labels, real, classes, iou_threshold)
    return (mean if per_class else 0.0), per_class


@torch.no_grad()
def validation_map(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, anchors: int, iou_threshold: float = 0.5, nms_threshold: float = 0.5, batch: int = 256
):
    """mAP@iou_threshold (and per-class AP) of a detector on canvases x with grid targets y, in eval mode, after NMS."""
    was = model.training
    model.eval()
    outs = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)]) if len(x) else torch.zeros(0, *y.shape[1:])
    model.train(was)
    found = [detect(d, MAP_CONFIDENCE, nms_threshold) for d in grid_boxes(outs, anchors)]
    return mean_average_precision(found, true_boxes(y, anchors), y.shape[1] // anchors - 5, iou_threshold)
