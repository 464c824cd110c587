"""The detection lab's measures: intersection over union, non-max suppression (with why each box went), a YOLO grid's
boxes and the mean average precision at IoU 0.5 (PASCAL VOC's all-point rule), in plain torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from dlviz.loop import decode_grid


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of xyxy boxes (..., 4); a box of zero or negative width or height has area 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def intersection_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise intersection and union areas (N, M) of xyxy boxes a (N, 4) and b (M, 4)."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    return inter, box_area(a)[:, None] + box_area(b)[None, :] - inter


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU (N, M) of xyxy boxes; 0 where the union is empty (two degenerate boxes), never NaN."""
    inter, union = intersection_union(a, b)
    return torch.where(union > 0, inter / union.clamp_min(torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


@dataclass
class Suppression:
    """What NMS did to each box, by the box's index in the input: `kept` (indices, best score first), and for a removed
    box the index of the kept box that suppressed it and their IoU (-1 and 0 for a kept box)."""

    kept: torch.Tensor
    suppressed_by: torch.Tensor
    iou: torch.Tensor


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> Suppression:
    """Greedy non-max suppression: take the best remaining box, remove every box overlapping it by IoU > iou_threshold,
    repeat. One IoU matrix of the boxes sorted by score; the loop walks its rows (torchvision.ops.nms's rule)."""
    n = len(boxes)
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order])
    over = (iou > iou_threshold).triu(1)  # row i: the lower-scored boxes that box i would remove
    removed = torch.zeros(n, dtype=torch.bool)
    by = torch.full((n,), -1, dtype=torch.long)
    kept = []
    for i in range(n):
        if removed[i]:
            continue
        kept.append(i)
        hit = over[i] & ~removed
        removed |= hit
        by[hit] = i
    suppressed_by = torch.full((n,), -1, dtype=torch.long)
    gone = by >= 0
    suppressed_by[order[gone]] = order[by[gone]]
    their_iou = torch.zeros(n, dtype=iou.dtype)
    their_iou[order[gone]] = iou[by[gone], gone.nonzero()[:, 0]]
    return Suppression(order[torch.tensor(kept, dtype=torch.long)], suppressed_by, their_iou)


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


def average_precision(recall: torch.Tensor, precision: torch.Tensor) -> float:
    """PASCAL VOC 2010+'s all-point AP: the area under the precision/recall curve after each precision is raised to
    the best precision at any higher recall."""
    r = torch.cat([torch.zeros(1), recall.double(), torch.ones(1)])
    p = torch.cat([torch.zeros(1), precision.double(), torch.zeros(1)])
    p = p.flip(0).cummax(0).values.flip(0)
    return float(((r[1:] - r[:-1]) * p[1:]).sum())


def mean_average_precision(found: list[Detections], truth: list[Detections], classes: int, iou_threshold: float = 0.5) -> tuple[float, dict[int, float]]:
    """mAP over the classes that have true boxes, and each one's AP. Per class, detections from every canvas in order of
    score are matched to the best-overlapping unmatched true box of that class on their canvas (IoU ≥ iou_threshold):
    a match is a true positive, anything else a false positive."""
    per_class = {}
    for c in range(classes):
        hits, scores, total = [], [], 0
        for f, t in zip(found, truth):
            mine, theirs = f.classes == c, t.classes == c
            total += int(theirs.sum())
            if not mine.any():
                continue
            boxes, s = f.boxes[mine], f.scores[mine]
            order = torch.argsort(s, descending=True, stable=True)
            iou = box_iou(boxes[order], t.boxes[theirs])
            taken = torch.zeros(iou.shape[1], dtype=torch.bool)
            for row in iou:  # greedy by score, as VOC's devkit matches
                row = row.masked_fill(taken, -1.0)
                j = int(row.argmax()) if len(row) else -1
                ok = j >= 0 and row[j] >= iou_threshold
                if ok:
                    taken[j] = True
                hits.append(ok)
            scores.append(s[order])
        if total == 0:
            continue  # VOC leaves out a class with no true box
        if not hits:
            per_class[c] = 0.0
            continue
        order = torch.argsort(torch.cat(scores), descending=True, stable=True)
        tp = torch.tensor(hits, dtype=torch.float64)[order].cumsum(0)
        fp = (1 - torch.tensor(hits, dtype=torch.float64)[order]).cumsum(0)
        per_class[c] = average_precision(tp / total, tp / (tp + fp))
    return (sum(per_class.values()) / len(per_class) if per_class else 0.0), per_class


MAP_CONFIDENCE = 0.01  # boxes below this score are left out of mAP (they only add points of near-zero precision)


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
