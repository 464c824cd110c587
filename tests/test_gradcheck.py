"""The gradient check against torch.autograd.gradcheck on the same function: both pass on a correct model, both fail
with the broken tanh, whose wrong backward shows as "wrong" before it and "fine" after it; kinks are named."""

import copy

import torch

from dlviz.analysis.gradcheck import BrokenTanh, break_model, gradient_check, setup
from dlviz.preset import gallery
from dlviz.preset.schema import validate


def small(layers, seed=2):
    return validate(
        {
            "format": "dlviz-preset/1",
            "seed": seed,
            "data": {"name": "xor", "num_samples": 60, "batch_size": 10},
            "model": {"input_shape": [2], "layers": layers},
            "loss": {"type": "CrossEntropyLoss"},
            "optimizer": {"type": "SGD", "lr": 0.1},
        }
    )


TANH = [{"type": "Linear", "out_features": 5}, {"type": "Tanh"}, {"type": "Linear", "out_features": 4}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]


def torch_gradcheck(exp, broken: bool) -> list[bool]:
    """torch.autograd.gradcheck of the loss on 4 samples as a function of each parameter tensor in turn, in float64."""
    ds, objective, model = setup(exp)
    model = copy.deepcopy(model).double().eval()
    if broken:
        break_model(model)
    x, y = ds.x_train[:4].double(), ds.y_train[:4]
    names = [n for n, _ in model.named_parameters()]
    state = dict(model.named_parameters())
    verdicts = []
    for name in names:

        def f(t, name=name):
            return objective.loss(torch.func.functional_call(model, {**state, name: t}, (x,)), y)

        verdicts.append(
            torch.autograd.gradcheck(f, (state[name].detach().clone().requires_grad_(True),), eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=False)
        )
    return verdicts


def test_agrees_with_torch_gradcheck_on_a_correct_model():
    exp = small(TANH)
    checks = gradient_check(exp)
    assert [c.verdict for c in checks] == ["fine"] * 6
    assert all(torch_gradcheck(exp, broken=False))
    assert [c.checked for c in checks] == [10, 5, 20, 4, 8, 2]  # every entry of every tensor


def test_catches_the_broken_layer_upstream_only_as_torch_gradcheck_does():
    exp = small(TANH)
    checks = gradient_check(exp, broken=True)
    ours = [c.verdict for c in checks]
    assert ours == ["wrong", "wrong", "fine", "fine", "fine", "fine"]  # layers[0] feeds the broken tanh; the rest follow it
    theirs = torch_gradcheck(exp, broken=True)
    assert theirs == [v == "fine" for v in ours]
    bad = checks[0]
    assert abs(bad.analytic - bad.numeric) > 1e-2 * max(abs(bad.analytic), abs(bad.numeric))


def test_broken_tanh_forward_is_tanh_and_backward_is_wrong():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    y = BrokenTanh()(x)
    assert torch.equal(y, torch.tanh(x))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, 1 - torch.tanh(x).detach())
    assert not torch.autograd.gradcheck(BrokenTanh(), (x,), raise_exception=False)


def test_a_model_without_activation_is_broken_after_its_first_linear():
    exp = small([{"type": "Linear", "out_features": 3}, {"type": "Linear", "out_features": 2}])
    assert [c.verdict for c in gradient_check(exp)] == ["fine"] * 4
    assert [c.verdict for c in gradient_check(exp, broken=True)] == ["wrong", "wrong", "fine", "fine"]


def test_a_relu_at_its_kink_is_named_not_blamed():
    # the first layer starts at zero, so every ReLU input is exactly 0: a finite difference straddles the kink
    layers = [{"type": "Linear", "out_features": 3, "init": "zeros"}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}]
    checks = gradient_check(small(layers))
    first = checks[0]
    assert first.verdict == "wrong" and "ReLU" in first.note and "kink" in first.note
    assert first.analytic == 0.0 and first.numeric != 0.0
    assert first.max_smooth_error < 1e-7
    assert all(c.verdict == "fine" and c.note == "" for c in checks[2:])


def test_max_pool_ties_are_named():
    exp = validate(
        {
            "format": "dlviz-preset/1",
            "seed": 0,
            "data": {"name": "digits", "batch_size": 16},
            "model": {
                "input_shape": [1, 8, 8],
                "layers": [
                    {"type": "Conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1, "init": "zeros"},
                    {"type": "MaxPool2d", "kernel_size": 2},
                    {"type": "Flatten"},
                    {"type": "Linear", "out_features": 10},
                ],
            },
            "loss": {"type": "CrossEntropyLoss"},
            "optimizer": {"type": "SGD", "lr": 0.1},
        }
    )
    conv = gradient_check(exp, samples=2)[0]  # every window of zeros is a four-way tie
    assert conv.verdict != "fine" and "max-pool" in conv.note


def test_zeros_compare_as_zero_error_and_sampling_is_seeded():
    zero = gradient_check(gallery.load("zero-init"))
    assert all(c.max_rel_error == 0.0 for c in zero if c.analytic == 0.0 and c.numeric == 0.0)
    exp = gallery.load("spiral-tanh")
    a, b = gradient_check(exp, max_entries=10, seed=3), gradient_check(exp, max_entries=10, seed=3)
    assert a == b and max(c.checked for c in a) == 10
