"""The triplet loss against its formula worked by hand and against nn.TripletMarginLoss, its per-batch mining against the
rules (same class, other class, semi-hard inequality) checked with distances taken in a plain loop, and the verification
AUC against scikit-learn."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from dlviz.errors import UserError
from dlviz.loop import MinedTripletLoss, batch_auc, pair_auc, rank_auc
from dlviz.preset.schema import LossSpec
from dlviz.training.fit import fit_model_to_data
from dlviz.training.losses import make_objective


def dist(u, v):
    return math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(u, v)))


# two samples of class 0 and one of class 1: the triplets are forced, (0, 1, 2) and (1, 0, 2)
E = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.4]])
Y = torch.tensor([0, 0, 1])


@pytest.mark.parametrize("margin", [0.2, 1.0, 3.0])
def test_squared_loss_is_the_formula_by_hand(margin):
    # max(0, ‖f(a)−f(p)‖² − ‖f(a)−f(n)‖² + α): anchor 0: 1 − (0.25 + 0.16) + α; anchor 1: the same by symmetry
    by_hand = max(0.0, 1.0 - 0.41 + margin)
    fn = MinedTripletLoss(margin=margin, squared=True)
    assert float(fn(E, Y)) == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("margin", [0.2, 1.0, 3.0])
def test_euclidean_loss_is_the_formula_by_hand_and_torchs(margin):
    # max(0, ‖f(a)−f(p)‖ − ‖f(a)−f(n)‖ + α), the Euclidean (not squared) distance nn.TripletMarginLoss uses
    by_hand = max(0.0, 1.0 - math.sqrt(0.41) + margin)
    fn = MinedTripletLoss(margin=margin)
    got = float(fn(E, Y).detach())
    assert got == pytest.approx(by_hand, abs=1e-5)  # torch adds eps = 1e-6 to each difference
    assert got == float(nn.TripletMarginLoss(margin=margin)(E[[0, 1]], E[[1, 0]], E[[2, 2]]))


def test_squared_and_euclidean_coincide_where_the_distances_do():
    # distances 0 and 1 are their own squares: both forms give max(0, 0 − 1 + α)
    e, y = torch.tensor([[0.0], [0.0], [1.0]]), torch.tensor([0, 0, 1])
    for margin in (0.5, 2.0):
        a, b = float(MinedTripletLoss(margin, squared=True)(e, y)), float(MinedTripletLoss(margin)(e, y))
        assert a == pytest.approx(max(0.0, margin - 1.0)) and b == pytest.approx(a, abs=1e-5)


def batch(seed, n=40, classes=5, dim=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("squared", [False, True])
def test_mined_triplets_are_valid_and_semi_hard_ones_satisfy_the_inequality(seed, squared):
    out, y = batch(seed)
    out = out * 0.5  # close enough for many negatives to fall inside the margin
    margin = 1.0
    rows = out.tolist()
    d = [[dist(u, v) ** (2 if squared else 1) for v in rows] for u in rows]
    for mining in ("random", "semi-hard"):
        a, p, n = MinedTripletLoss(margin, mining, squared, seed=seed).mine(out, y)
        has = [i for i in range(len(y)) if any(y[j] == y[i] and j != i for j in range(len(y))) and any(y[j] != y[i] for j in range(len(y)))]
        assert a.tolist() == has  # every anchor with a positive and a negative, once
        assert (y[a] == y[p]).all() and (a != p).all() and (y[a] != y[n]).all()
        if mining == "semi-hard":
            hard = 0
            for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):
                semi = [m for m in range(len(y)) if y[m] != y[i] and d[i][j] < d[i][m] < d[i][j] + margin]
                if semi:
                    assert k in semi
                    hard += 1
            assert hard > 0


def test_mining_is_seeded_and_the_loss_trains():
    out, y = batch(3)
    first = [t.tolist() for t in MinedTripletLoss(mining="semi-hard", seed=7).mine(out, y)]
    assert first == [t.tolist() for t in MinedTripletLoss(mining="semi-hard", seed=7).mine(out, y)]
    assert first != [t.tolist() for t in MinedTripletLoss(mining="semi-hard", seed=8).mine(out, y)]
    leaf = out.clone().requires_grad_(True)
    MinedTripletLoss()(leaf, y).backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_a_batch_of_one_class_costs_nothing():
    leaf = torch.randn(6, 2, requires_grad=True)
    loss = MinedTripletLoss()(leaf, torch.zeros(6, dtype=torch.long))
    loss.backward()
    assert float(loss.detach()) == 0 and leaf.grad.abs().sum() == 0


@pytest.mark.parametrize("seed", range(4))
def test_rank_auc_is_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 12, 300).astype(float)  # many ties
    positive = rng.random(300) < 0.3 + 0.05 * score
    assert rank_auc(torch.tensor(score), torch.tensor(positive)) == pytest.approx(roc_auc_score(positive, score), abs=1e-12)
    assert math.isnan(rank_auc(torch.tensor(score), torch.zeros(300, dtype=torch.bool)))


def test_pair_auc_scores_every_pair_by_distance():
    out, y = batch(1, n=30, classes=3)
    i, j = np.triu_indices(30, 1)
    d = np.array([dist(out[a], out[b]) for a, b in zip(i, j)])
    want = roc_auc_score((y[i] == y[j]).numpy(), -d)
    assert pair_auc(out, y) == pytest.approx(want, abs=1e-12)
    both = batch_auc(torch.cat([out, out[:10]]), torch.cat([y, y[:10]]), torch.tensor([30, 10]))
    assert both.tolist() == pytest.approx([want, pair_auc(out[:10], y[:10])], abs=1e-12)


def test_the_loss_asks_for_labels_and_an_embedding_vector():
    spec = LossSpec.model_validate({"type": "TripletMarginLoss", "mining": "semi-hard"})
    assert make_objective(spec, "classification", 8, (), (2,)).task == "embedding"
    with pytest.raises(UserError, match="one class label a sample"):
        make_objective(spec, "regression", None, (1,), (1,))
    with pytest.raises(UserError, match=r"one embedding vector of 2 or more numbers a sample but the model outputs \[4, 3, 3\]"):
        make_objective(spec, "classification", 8, (), (4, 3, 3))
    with pytest.raises(UserError, match="2 or more numbers"):
        make_objective(spec, "classification", 8, (), (1,))


def test_a_model_fitted_to_new_data_keeps_its_embedding_size():
    doc = {
        "format": "dlviz-preset/1",
        "data": {"name": "digits", "classes": [0, 1, 2]},
        "model": {"input_shape": [1, 28, 28], "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 8}]},
        "loss": {"type": "TripletMarginLoss"},
    }
    fitted, _ = fit_model_to_data(doc)
    assert fitted["model"]["input_shape"] == [1, 8, 8] and fitted["model"]["layers"][-1]["out_features"] == 8


def test_the_train_pages_metric_chart_shows_an_embeddings_auc():
    """The Train page's metric chart draws the batch and epoch AUC of an embedding, not an accuracy it has not."""
    from dlviz.figures.train import metric_figure
    from dlviz.preset import gallery
    from dlviz.preset.schema import validate
    from dlviz.training.live import FeedCallback, LiveFeed
    from dlviz.training.trainer import Trainer

    doc = gallery.raw("verification-triplet")
    doc["data"]["subset"], doc["training"]["epochs"] = 300, 2
    feed = LiveFeed()
    Trainer(validate(doc), [FeedCallback(feed.handle)]).run()
    snap = feed.snapshot()
    assert snap["task"] == "embedding"
    spec = metric_figure.spec(snap)
    assert [t["name"] for t in spec["data"]] == ["batch AUC", "train", "validation"] and spec["layout"]["title"]["text"] == "AUC"
    assert all(0 < e["val_auc"] <= 1 and 0 < e["train_auc"] <= 1 for e in snap["epochs"])
    # a label against an embedding's first number is no fit: the live view says what it shows instead
    assert "note" in snap["evaluation"] and "verification AUC" in snap["evaluation"]["note"]


def test_a_detectors_grid_gets_no_fit_plot_of_its_first_number():
    from dlviz.preset import gallery
    from dlviz.preset.schema import validate
    from dlviz.training.live import FeedCallback, LiveFeed
    from dlviz.training.trainer import Trainer

    doc = gallery.raw("detection-yolo")
    doc["data"]["num_samples"], doc["training"]["epochs"] = 64, 1
    feed = LiveFeed()
    Trainer(validate(doc), [FeedCallback(feed.handle)]).run()
    ev = feed.snapshot()["evaluation"]
    assert set(ev) == {"note"} and "numbers" in ev["note"], ev
