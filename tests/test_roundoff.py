"""Round-off: a naive float32 softmax followed by log overflows to inf and NaN where logsumexp does not; the stable
route equals torch.log_softmax and F.cross_entropy; the probabilities Inspect shows are torch's softmax and sigmoid."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlviz.analysis import roundoff as ro


@pytest.mark.parametrize("scale", [1, 10, 44, 45, 100, 1000])
@pytest.mark.parametrize("target", [0, 3])
def test_the_stable_route_is_torch_s(scale, target):
    r = ro.roundoff(ro.EXAMPLE_LOGITS, scale, target)
    z = torch.tensor(ro.EXAMPLE_LOGITS, dtype=torch.float32) * scale
    np.testing.assert_allclose(r.log_softmax, torch.log_softmax(z, 0).numpy(), rtol=1e-6, atol=1e-6)
    ce = float(F.cross_entropy(z[None], torch.tensor([target])))
    assert r.cross_entropy == ce and r.stable_loss == pytest.approx(ce, rel=1e-6, abs=1e-6)
    assert math.isfinite(r.stable_loss) and np.isfinite(r.log_softmax).all()


def test_the_naive_softmax_overflows_where_logsumexp_does_not():
    small = ro.roundoff(ro.EXAMPLE_LOGITS, 1.0, 0)
    assert not small.naive_fails and small.naive_loss == pytest.approx(small.cross_entropy, rel=1e-6)
    # exp(2 × 45) = exp(90) is past float32's largest number: inf / inf
    big = ro.roundoff(ro.EXAMPLE_LOGITS, 45.0, 0)
    assert math.isinf(float(torch.exp(torch.tensor(90.0)))) and 90 > ro.FLOAT32_EXP_LIMIT > 88
    assert np.isnan(big.naive_probs[0]) and math.isnan(big.naive_loss)
    assert math.isfinite(big.stable_loss) and big.stable_loss == pytest.approx(
        float(F.cross_entropy(torch.tensor(ro.EXAMPLE_LOGITS)[None] * 45, torch.tensor([0])))
    )
    assert ro.first_failure(ro.EXAMPLE_LOGITS, 0) == 45
    # the wrong class's probability underflows to 0 before anything overflows: its log is -inf, the loss inf
    under = ro.roundoff(ro.EXAMPLE_LOGITS, 40.0, 3)
    assert under.naive_probs[3] == 0.0 and math.isinf(under.naive_loss)
    assert under.stable_loss == pytest.approx(3.0 * 40, rel=1e-6)  # z0 - z3 = 3 per unit of scale, the others negligible


def test_logsumexp_is_torch_s():
    z = torch.tensor([1000.0, 999.0, -5.0])
    assert float(ro.logsumexp(z)) == pytest.approx(float(torch.logsumexp(z, 0)), rel=1e-7)
    assert math.isinf(float(torch.log(torch.exp(z).sum())))


def test_class_probabilities():
    z = torch.tensor([0.5, -1.0, 2.0])
    np.testing.assert_allclose(ro.class_probabilities(z, "CrossEntropyLoss"), torch.softmax(z.double(), 0).numpy())
    log_p = torch.log_softmax(z, 0)
    np.testing.assert_allclose(ro.class_probabilities(log_p, "NLLLoss"), torch.softmax(z.double(), 0).numpy(), rtol=1e-6)
    p = float(torch.sigmoid(torch.tensor(0.3, dtype=torch.float64)))
    np.testing.assert_allclose(ro.class_probabilities(torch.tensor([0.3]), "BCEWithLogitsLoss"), [1 - p, p])
    assert ro.class_probabilities(z, "MSELoss") is None and ro.class_probabilities(z, None) is None
