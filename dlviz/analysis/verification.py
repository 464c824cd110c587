"""One-shot verification with an embedding: pairs of images called the same class when their embeddings lie within a
distance threshold, the ROC curve over the thresholds with its AUC, the accuracy at one threshold, and the embeddings
drawn on a plane."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlviz.analysis.sequences import principal_plane
from dlviz.errors import UserError

PAIRS = 1000  # same pairs, and as many different pairs, drawn for the distance distributions and the ROC curve


@torch.no_grad()
def embed(net: nn.Module, x: torch.Tensor, batch: int = 1024) -> np.ndarray:
    """The embeddings (N, D) of the images `x`, in eval mode, as float64."""
    net.eval()
    device = next(net.parameters()).device
    return torch.cat([net(x[i : i + batch].to(device)).double().cpu() for i in range(0, len(x), batch)]).numpy()


@dataclass(frozen=True)
class Pairs:
    """Pairs of images by index: `first[k]` and `second[k]` are two different images, of one class where `same[k]`."""

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray


def draw_pairs(labels: np.ndarray, n: int, seed: int) -> Pairs:
    """n pairs of two images of one class, then n pairs of two classes, drawn from `labels` on `seed`: a first image at
    random (among those with another of their class, for a same pair), then its partner at random among the allowed."""
    labels = np.asarray(labels)
    counts = dict(zip(*np.unique(labels, return_counts=True)))
    if len(counts) < 2 or max(counts.values()) < 2:
        raise UserError(
            "pairs", f"verification needs two images of one class and images of two classes; these {len(labels)} images have {len(counts)} class(es)"
        )
    rng = np.random.default_rng(seed)
    twice = np.flatnonzero([counts[c] >= 2 for c in labels])
    first, second = [], []
    for k in range(2 * n):
        i = int(twice[rng.integers(len(twice))]) if k < n else int(rng.integers(len(labels)))
        allowed = np.flatnonzero(labels == labels[i]) if k < n else np.flatnonzero(labels != labels[i])
        allowed = allowed[allowed != i]
        first.append(i)
        second.append(int(allowed[rng.integers(len(allowed))]))
    return Pairs(np.array(first), np.array(second), np.arange(2 * n) < n)


def distances(emb: np.ndarray, pairs: Pairs) -> np.ndarray:
    """The Euclidean distance between the embeddings of each pair."""
    return np.linalg.norm(emb[pairs.first] - emb[pairs.second], axis=1)


@dataclass(frozen=True)
class ROC:
    """The ROC curve of calling a pair "same" when its distance is at most a threshold: the thresholds in increasing
    order (the first, −inf, calls no pair same), the true and false positive rates at each, and the area under it."""

    thresholds: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    auc: float


def roc_curve(dist: np.ndarray, same: np.ndarray) -> ROC:
    """The ROC curve over every distinct distance as the threshold, and its area by the trapezoid rule."""
    dist, same = np.asarray(dist, dtype=np.float64), np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise UserError("pairs", "an ROC curve needs both same and different pairs")
    t = np.unique(dist)
    tpr = np.searchsorted(np.sort(dist[same]), t, side="right") / same.sum()
    fpr = np.searchsorted(np.sort(dist[~same]), t, side="right") / (~same).sum()
    tpr, fpr = np.concatenate([[0.0], tpr]), np.concatenate([[0.0], fpr])
    return ROC(np.concatenate([[-np.inf], t]), tpr, fpr, float(np.trapezoid(tpr, fpr)))


def at_threshold(dist: np.ndarray, same: np.ndarray, threshold: float) -> dict:
    """Accuracy, true positive rate and false positive rate of calling the pairs within `threshold` the same."""
    dist, same = np.asarray(dist), np.asarray(same, dtype=bool)
    called = dist <= threshold
    return {"accuracy": float((called == same).mean()), "tpr": float(called[same].mean()), "fpr": float(called[~same].mean())}


def best_threshold(roc: ROC, same: int, different: int) -> float:
    """The threshold of the highest accuracy on `same` same pairs and `different` different pairs (the smallest such),
    read off the curve's rates: accuracy = (TPR·same + (1 − FPR)·different) / (same + different)."""
    accuracy = (roc.tpr[1:] * same + (1 - roc.fpr[1:]) * different) / (same + different)
    return float(roc.thresholds[1 + int(np.argmax(accuracy))])


def projection(emb: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The embeddings on a plane: as they are when they have two dimensions or fewer (one padded with zeros), otherwise
    their first two principal components, with those components' explained variance ratios (None when as they are)."""
    if emb.shape[1] <= 2:
        return np.pad(emb, ((0, 0), (0, 2 - emb.shape[1]))), None
    return principal_plane(emb)


@dataclass(frozen=True)
class Verification:
    """Pairs of images, their embeddings' distances and the ROC curve of verifying them by distance."""

    pairs: Pairs
    distances: np.ndarray
    roc: ROC


def verify(emb: np.ndarray, labels: np.ndarray, n: int = PAIRS, seed: int = 0) -> Verification:
    """n same and n different pairs drawn from the embedded images, their distances and the ROC curve."""
    pairs = draw_pairs(labels, n, seed)
    d = distances(emb, pairs)
    return Verification(pairs, d, roc_curve(d, pairs.same))
