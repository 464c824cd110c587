"""Verification by distance: the ROC curve and its AUC against scikit-learn's, the accuracy at a threshold against a plain
loop, pairs that are what they say, and the plane of the embeddings against scikit-learn's PCA."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from torch import nn

from dlviz.analysis.verification import at_threshold, best_threshold, draw_pairs, embed, projection, roc_curve, verify
from dlviz.data.datasets import left_out_images
from dlviz.errors import UserError
from dlviz.preset.schema import DataSpec


def scores(seed, n=400, ties=True):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    d = rng.gamma(2.0, 1.0, n) + np.where(same, 0.0, 1.0)
    return (np.round(d, 1) if ties else d), same


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [True, False])
def test_roc_and_auc_are_scikit_learns(seed, ties):
    d, same = scores(seed, ties=ties)
    roc = roc_curve(d, same)
    fpr, tpr, thr = sk_roc_curve(same, -d, drop_intermediate=False)  # closer is more alike: the score is −distance
    np.testing.assert_allclose(roc.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(roc.tpr, tpr, atol=1e-12)
    np.testing.assert_array_equal(roc.thresholds, -thr)
    assert roc.auc == pytest.approx(roc_auc_score(same, -d), abs=1e-12)


def test_accuracy_at_a_threshold_is_a_count_by_hand():
    d, same = scores(7)
    roc = roc_curve(d, same)
    for k in (0, 5, len(roc.thresholds) // 2, len(roc.thresholds) - 1):
        t = roc.thresholds[k]
        tp = sum(1 for x, s in zip(d, same) if s and x <= t)
        tn = sum(1 for x, s in zip(d, same) if not s and x > t)
        got = at_threshold(d, same, t)
        assert got["accuracy"] == pytest.approx((tp + tn) / len(d))
        assert got["tpr"] == pytest.approx(roc.tpr[k]) and got["fpr"] == pytest.approx(roc.fpr[k])
    assert roc.tpr[-1] == roc.fpr[-1] == 1 and roc.tpr[0] == roc.fpr[0] == 0


def test_best_threshold_is_the_most_accurate_one_tried():
    d, same = scores(3)
    roc = roc_curve(d, same)
    best = best_threshold(roc, int(same.sum()), int((~same).sum()))
    tried = [at_threshold(d, same, t)["accuracy"] for t in np.unique(d)]
    assert at_threshold(d, same, best)["accuracy"] == pytest.approx(max(tried))
    assert best == np.unique(d)[int(np.argmax(tried))]


def test_pairs_are_what_they_say():
    labels = np.array([8] * 7 + [9] * 5 + [3])  # the lone 3 can only be in different pairs
    p = draw_pairs(labels, 200, seed=1)
    assert p.same.sum() == 200 and (~p.same).sum() == 200
    assert (p.first != p.second).all()
    assert (labels[p.first][p.same] == labels[p.second][p.same]).all()
    assert (labels[p.first][~p.same] != labels[p.second][~p.same]).all()
    assert 12 in np.concatenate([p.first[~p.same], p.second[~p.same]])
    again = draw_pairs(labels, 200, seed=1)
    assert (again.first == p.first).all() and (again.second == p.second).all()
    assert not (draw_pairs(labels, 200, seed=2).first == p.first).all()
    with pytest.raises(UserError, match="two images of one class"):
        draw_pairs(np.array([1, 2, 3]), 5, 0)
    with pytest.raises(UserError, match="two images of one class"):
        draw_pairs(np.array([4, 4, 4]), 5, 0)


def test_verify_scores_embeddings_that_separate_the_classes():
    labels = np.repeat([0, 1, 2], 30)
    emb = np.eye(3)[labels] * 5 + np.random.default_rng(0).normal(0, 0.3, (90, 3))
    v = verify(emb, labels, 300, seed=0)
    assert v.roc.auc > 0.99
    first, second = v.pairs.first, v.pairs.second
    np.testing.assert_allclose(v.distances, [np.sqrt(((emb[i] - emb[j]) ** 2).sum()) for i, j in zip(first, second)])


def test_projection_is_the_embedding_or_its_pca():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(50, 2))
    coords, explained = projection(flat)
    assert explained is None and (coords == flat).all()
    assert projection(flat[:, :1])[0].tolist() == np.pad(flat[:, :1], ((0, 0), (0, 1))).tolist()
    emb = rng.normal(size=(60, 8)) * np.arange(1, 9)
    coords, explained = projection(emb)
    pca = PCA(2).fit(emb)
    np.testing.assert_allclose(np.abs(coords), np.abs(pca.transform(emb)), atol=1e-9)  # the same axes, up to their signs
    np.testing.assert_allclose(explained, pca.explained_variance_ratio_, atol=1e-12)


def test_embed_is_the_model_in_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    x = torch.randn(30, 4)
    got = embed(net, x, batch=7)
    assert not net.training
    np.testing.assert_allclose(got, net(x).detach().double().numpy(), atol=1e-6)


def test_left_out_digits_are_the_ones_classes_leaves_out():
    x, digits = left_out_images(DataSpec.model_validate({"name": "digits", "classes": [0, 1, 2, 3, 4, 5, 6, 7]}))
    assert set(digits.tolist()) == {8, 9} and x.shape == (len(digits), 1, 8, 8)
    assert len(left_out_images(DataSpec.model_validate({"name": "digits"}))[1]) == 0
