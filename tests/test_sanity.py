"""The sanity checks pass on a healthy preset and each fails where it should: zero init (nothing to regularize, no
update, nothing learnt), a last layer ×100 (initial loss far above chance), heavy dropout (no over-fitting); and the
CLI's `check` prints them with exit 1 when one fails."""

import json
import math

import pytest
import torch
from test_cli import cli, user_error
from torch import nn

from dlviz.analysis.gradcheck import setup
from dlviz.analysis.sanity import OVERFIT_SAMPLES, sanity_checks
from dlviz.preset import gallery
from dlviz.preset.schema import validate

NAMES = ["initial loss", "regularization", "overfit a tiny subset", "gradient check", "update/weight ratio"]


def xor(edit=None):
    doc = gallery.raw("xor")
    if edit:
        edit(doc)
    return validate(doc)


def verdicts(exp):
    return {c.name: c.ok for c in sanity_checks(exp)}


def test_a_healthy_preset_passes_every_check_and_reports_each_as_it_finishes():
    seen = []
    checks = sanity_checks(xor(), on_check=seen.append)
    assert [c.name for c in checks] == NAMES and seen == checks
    assert all(c.ok is True for c in checks), [c.sentence for c in checks]
    for c in checks:
        assert math.isfinite(c.value) and c.reference and c.sentence.endswith(".")
    assert sanity_checks(xor()) == checks  # seeded: the same numbers every time


def test_initial_loss_is_the_untrained_models_against_ln_2():
    exp = xor()
    ds, objective, model = setup(exp)
    model.eval()
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model(ds.x_train), ds.y_train))
    first = sanity_checks(exp)[0]
    assert first.value == pytest.approx(expected, rel=1e-6)
    assert "ln(1/2)" in first.reference and f"{math.log(2):.3f}" in first.reference


def test_zero_init_fails_regularization_overfit_and_update_ratio():
    # Every weight 0: the outputs are 0, exactly chance (initial loss passes); the penalty of zero weights is 0, so ×10
    # adds nothing; no weight gets a gradient (each layer's is the next layer's zero weights times something), so
    # ‖Δw‖ = 0 and only the last bias learns: 20 samples stay near the class balance's entropy. The gradients that
    # are there (all zero but the last bias) are correct, so the gradient check passes.
    assert verdicts(gallery.load("zero-init")) == {
        "initial loss": True,
        "regularization": False,
        "overfit a tiny subset": False,
        "gradient check": True,
        "update/weight ratio": False,
    }


def test_a_last_layer_scaled_up_100_times_starts_far_above_chance():
    # the last Linear drawn from N(0, 20²) instead of PyTorch's default U(±1/√8), whose std is about 0.2: ×100
    def big_last(doc):
        doc["model"]["layers"][-1]["init"] = {"type": "normal", "std": 20.0}

    checks = {c.name: c for c in sanity_checks(xor(big_last))}
    first = checks["initial loss"]
    assert first.ok is False and first.value > math.log(2) + math.log(2)
    assert "smaller init for the last layer" in first.sentence
    assert checks["gradient check"].ok is True


def test_heavy_dropout_cannot_overfit_a_tiny_subset():
    def dropout(doc):
        doc["model"]["layers"].insert(2, {"type": "Dropout", "p": 0.9})

    checks = {c.name: c for c in sanity_checks(xor(dropout))}
    over = checks["overfit a tiny subset"]
    assert over.ok is False and over.value > 0.01 and "dropout" in over.sentence
    assert checks["initial loss"].ok is True  # eval mode: dropout off


def test_overfit_reaches_one_percent_as_a_hand_written_loop_does():
    exp = xor()
    ds, objective, model = setup(exp)
    x, y = ds.x_train[:OVERFIT_SAMPLES], ds.y_train[:OVERFIT_SAMPLES]
    with torch.no_grad():
        start = float(nn.functional.cross_entropy(model(x), y))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for steps in range(500):
        loss = nn.functional.cross_entropy(model(x), y)
        if float(loss.detach()) < 0.01 * start:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    over = sanity_checks(exp)[2]
    assert over.ok and over.value == pytest.approx(float(loss.detach()) / start, rel=1e-4)
    assert f"in {steps} steps" in over.sentence


def test_regularization_uses_the_presets_l1_and_l2_times_ten():
    def penalties(doc):
        doc["training"]["l1"], doc["training"]["l2"] = 0.001, 0.002

    exp = xor(penalties)
    ds, objective, model = setup(exp)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    model.eval()
    with torch.no_grad():
        data = float(nn.functional.cross_entropy(model(ds.x_train), ds.y_train))
        penalty = float(0.01 * sum(w.abs().sum() for w in weights) + 0.02 * sum((w**2).sum() for w in weights))
    reg = sanity_checks(exp)[1]
    assert reg.ok and reg.value == pytest.approx(data + penalty, rel=1e-5)
    assert "L1 λ = 0.01" in reg.sentence and "L2 λ = 0.02" in reg.sentence and "preset's penalty" in reg.reference


def test_a_regression_preset_compares_with_the_targets_variance():
    checks = sanity_checks(gallery.load("outliers-mse"))
    assert "variance" in checks[0].reference
    assert all(c.ok for c in checks), [c.sentence for c in checks]


def test_cli_check_json_and_exit_1_when_one_fails():
    code, out, err = cli("check", "zero-init", "--json")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 1 and [r["name"] for r in rows] == NAMES, (out, err)
    assert [r["ok"] for r in rows] == [True, False, False, True, False]
    assert "Traceback" not in err


def test_cli_check_user_error_is_one_line():
    assert "preset" in user_error(*cli("check", "no-such-preset"))


@pytest.mark.slow
def test_cli_check_prints_one_line_a_check_and_exits_0():
    code, out, err = cli("check", "xor")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 5 and all(line.startswith("ok") for line in lines), (out, err)
