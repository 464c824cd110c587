"""The detection lab: the tiny YOLO trained by the app's trainer against a bare PyTorch loop on the same canvases and model,
and NMS on 1,000 boxes against a straightforward per-box Python loop.

The headline is the lesson as the gallery ships it, its units probed at the trainer's default interval (the goal: a
ratio of at most 1 / 0.9); a second row trains it with no probes after the first, to show what the probes cost.

Prints JSON lines {"bench", "case", "ratio", ...}; ratio = our time / the reference's time on the same work, measured
side by side in this run (lower is better). Run: python bench/detection.py [--quick]
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from dlviz.analysis.detection import box_iou, nms  # noqa: E402
from dlviz.loop import grid_map  # noqa: E402
from dlviz.preset import gallery  # noqa: E402
from dlviz.preset.schema import validate  # noqa: E402
from dlviz.training.trainer import Trainer  # noqa: E402

QUICK = "--quick" in sys.argv
torch.set_num_threads(1)


def detector(quick: bool, probes: bool) -> dict:
    """The lesson as the gallery ships it (a smaller run with --quick); without `probes`, its units are probed only
    before the first step."""
    doc = gallery.raw("detection-yolo")
    if quick:
        doc["data"]["num_samples"], doc["training"]["epochs"] = 600, 2
    if not probes:
        doc["training"]["telemetry_every"] = 10**9
    return doc


def bare_loop(trainer: Trainer, model: torch.nn.Module) -> float:
    """The loop a PyTorch user writes by hand: shuffled mini-batches, zero_grad/backward/step with the same loss, and a
    validation loss and mAP@0.5 per epoch (what `train --json` reports)."""
    exp, ds = trainer.exp, trainer.dataset
    opt = type(trainer.optimizer)(model.parameters(), **{k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()})
    loss_fn = copy.deepcopy(trainer.objective.loss_fn)
    g = torch.Generator().manual_seed(exp.seed)
    n, bs = len(ds.x_train), exp.data.batch_size
    t0 = time.perf_counter()
    for _ in range(exp.training.epochs):
        model.train()
        total = torch.zeros(())
        for idx in torch.randperm(n, generator=g).split(bs):
            loss = loss_fn(model(ds.x_train[idx]), ds.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        model.eval()
        with torch.no_grad():
            out = model(ds.x_val)
            float(loss_fn(out, ds.y_val)), float(total), grid_map(out, ds.y_val, trainer.objective.anchors)
    return time.perf_counter() - t0


def training(reps: int, probes: bool) -> None:
    exp = validate(detector(QUICK, probes))
    ours_t, ref_t = [], []
    for r in range(reps):
        tr = Trainer(exp)
        model = copy.deepcopy(tr.model)
        if r % 2:  # alternate which goes first, so that a change of load does not always favour one side
            ref_t.append(bare_loop(tr, model))
        t0 = time.perf_counter()
        tr.run()
        ours_t.append(time.perf_counter() - t0)
        if not r % 2:
            ref_t.append(bare_loop(tr, model))
    med = statistics.median
    # the best of each side: on a shared machine, other work only ever adds time
    ratio = min(ours_t) / min(ref_t)
    case = "train tiny YOLO" + ("" if probes else ", units probed once")
    row = {"bench": "detection", "case": case, "ratio": round(ratio, 4), "speed": round(1 / ratio, 4), "telemetry_every": tr.telemetry_every}
    row.update(ours_s=round(min(ours_t), 4), reference_s=round(min(ref_t), 4), median_ratio=round(med(a / b for a, b in zip(ours_t, ref_t)), 4))
    row.update(steps=tr.step, reps=reps, probe_samples=len(tr.probe_x))
    print(json.dumps(row), flush=True)


def nms_by_loop(boxes: list, scores: list, threshold: float) -> list[int]:
    """NMS as first written: for each box, best first, compare it with every kept box one pair at a time."""
    kept = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        a = boxes[i]
        for j in kept:
            b = boxes[j]
            inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if union > 0 and inter / union > threshold:
                break
        else:
            kept.append(i)
    return kept


def suppression(reps: int, n: int = 1000, threshold: float = 0.5) -> None:
    g = torch.Generator().manual_seed(0)
    corner = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat([corner, corner + torch.rand(n, 2, generator=g) * 40 + 4], 1)
    scores = torch.rand(n, generator=g)
    as_lists = boxes.tolist(), scores.tolist()
    assert nms(boxes, scores, threshold).kept.tolist() == nms_by_loop(*as_lists, threshold)
    ours_t, ref_t = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        kept = nms(boxes, scores, threshold).kept
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        nms_by_loop(*as_lists, threshold)
        ref_t.append(time.perf_counter() - t0)
    iou_t = []
    for _ in range(reps):  # the part of ours that is one tensor operation
        t0 = time.perf_counter()
        box_iou(boxes, boxes)
        iou_t.append(time.perf_counter() - t0)
    med = statistics.median
    row = {"bench": "detection", "case": f"NMS of {n:,} boxes", "ratio": round(med(ours_t) / med(ref_t), 4)}
    row.update(ours_ms=round(1e3 * med(ours_t), 3), reference_ms=round(1e3 * med(ref_t), 3), iou_matrix_ms=round(1e3 * med(iou_t), 3), kept=len(kept))
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    suppression(5 if QUICK else 20)
    training(1 if QUICK else 3, probes=True)
    training(1 if QUICK else 2, probes=False)
