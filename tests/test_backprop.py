"""Backprop step by step: every number of the trace equals autograd's (forward values, dL/dz, dL/dw) and the update
equals torch.optim's own step on the same sample."""

import copy

import pytest
import torch

from dlviz.analysis.backprop import backprop_trace
from dlviz.analysis.gradcheck import setup
from dlviz.errors import UserError
from dlviz.preset.schema import validate


def tiny(layers, optimizer, loss="CrossEntropyLoss", data=None, seed=1):
    return validate(
        {
            "format": "dlviz-preset/1",
            "seed": seed,
            "data": data or {"name": "xor", "num_samples": 100, "batch_size": 10},
            "model": {"input_shape": [2], "layers": layers},
            "loss": {"type": loss},
            "optimizer": optimizer,
        }
    )


THREE_LAYERS = [
    {"type": "Linear", "out_features": 4},
    {"type": "Tanh"},
    {"type": "Linear", "out_features": 3},
    {"type": "Sigmoid"},
    {"type": "Linear", "out_features": 2},
]


def close(values, expected: torch.Tensor) -> None:
    torch.testing.assert_close(torch.tensor(values, dtype=torch.float64), expected.double(), rtol=1e-5, atol=1e-7)


def reference(exp, sample):
    """Autograd's pre-activations and gradients, and torch.optim's step, on the same model and sample."""
    ds, objective, model = setup(exp)
    model = copy.deepcopy(model)
    x, y = ds.x_train[sample : sample + 1], ds.y_train[sample : sample + 1]
    zs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: zs.append(o)) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    loss = objective.loss(model(x), y)
    for h in hooks:
        h.remove()
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params + zs)
    opt_args = {k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()}
    opt = getattr(torch.optim, exp.optimizer.type)(params, **opt_args)
    for p, g in zip(params, grads):
        p.grad = g.clone()
    before = [p.detach().clone() for p in params]
    opt.step()
    return float(loss.detach()), [z.detach()[0] for z in zs], grads[: len(params)], grads[len(params) :], before, [p.detach() for p in params]


@pytest.mark.parametrize(
    "optimizer",
    [{"type": "SGD", "lr": 0.1, "momentum": 0.9}, {"type": "Adam", "lr": 0.01}, {"type": "SGD", "lr": 0.5}],
    ids=["sgd-momentum", "adam", "sgd"],
)
def test_trace_equals_autograd_and_torch_optim(optimizer):
    exp = tiny(THREE_LAYERS, optimizer)
    t = backprop_trace(exp, sample=5)
    loss, zs, pgrads, zgrads, before, after = reference(exp, 5)
    assert t["loss"]["value"] == pytest.approx(loss, rel=1e-6)
    for k, layer in enumerate(t["forward"]):
        close([n["z"] for n in layer["neurons"]], zs[k])
    backward = {b["layer"]: b for b in t["backward"]}
    for k, layer in enumerate(t["forward"]):
        b = backward[layer["layer"]]
        close([n["dL_dz"] for n in b["neurons"]], zgrads[k][0])
        close([n["dL_dw"] for n in b["neurons"]], pgrads[2 * k])
        close([n["dL_db"] for n in b["neurons"]], pgrads[2 * k + 1])
        for n in b["neurons"]:  # the chain rule's product, as shown
            assert n["dL_dz"] == pytest.approx(n["f_prime"] * n["dL_da"], rel=1e-6, abs=1e-12)
        u = t["update"]["layers"][k]
        close([[w["old"] for w in row] for row in u["weights"]], before[2 * k])
        close([[w["new"] for w in row] for row in u["weights"]], after[2 * k])
        close([w["new"] for w in u["bias"]], after[2 * k + 1])
    if optimizer == {"type": "SGD", "lr": 0.5}:  # plain SGD: new = w − lr·g, in the trace's own numbers
        for u in t["update"]["layers"]:
            for row in u["weights"]:
                for w in row:
                    assert w["new"] == pytest.approx(w["old"] - 0.5 * w["grad"], rel=1e-5, abs=1e-7)


def test_forward_numbers_are_the_neurons_own():
    t = backprop_trace(tiny(THREE_LAYERS, {"type": "SGD", "lr": 0.1}), sample=0)
    for n in t["forward"][0]["neurons"]:
        assert n["z"] == pytest.approx(sum(w * a for w, a in zip(n["weights"], n["inputs"])) + n["bias"], rel=1e-5)
        assert n["a"] == pytest.approx(torch.tanh(torch.tensor(n["z"])).item(), rel=1e-6)


def test_regression_loss():
    exp = tiny(
        [{"type": "Linear", "out_features": 3}, {"type": "ReLU"}, {"type": "Linear", "out_features": 1}],
        {"type": "Adam", "lr": 0.01},
        loss="MSELoss",
        data={"name": "reg-plane", "num_samples": 60, "batch_size": 10},
    )
    t = backprop_trace(exp, sample=2)
    loss, *_ = reference(exp, 2)
    assert t["loss"]["value"] == pytest.approx(loss, rel=1e-6)
    out, target = t["loss"]["output"][0], t["loss"]["target"][0]
    assert t["loss"]["dL_doutput"][0] == pytest.approx(2 * (out - target), rel=1e-5)


def test_too_large_is_refused_unless_first_layers_asks():
    big = [
        {"type": "Linear", "out_features": 4},
        {"type": "Tanh"},
        {"type": "Linear", "out_features": 3},
        {"type": "Tanh"},
        {"type": "Linear", "out_features": 16},
        {"type": "Tanh"},
        {"type": "Linear", "out_features": 2},
    ]
    exp = tiny(big, {"type": "SGD", "lr": 0.1})
    with pytest.raises(UserError) as e:
        backprop_trace(exp)
    assert e.value.path == "model.layers" and "2-4-3-16-2" in e.value.message
    t = backprop_trace(exp, first_layers=2)
    assert t["layers_shown"] == 2 and t["layers_total"] == 4
    # 3 outputs do not fit a 2-class cross-entropy: the stated stand-in is the mean square of the slice's output
    assert t["loss"]["type"] == "MSELoss" and "zeros" in t["loss"]["against"]
    out = t["loss"]["output"]
    assert t["loss"]["value"] == pytest.approx(sum(v * v for v in out) / len(out), rel=1e-6)
    assert t["loss"]["dL_doutput"] == pytest.approx([2 * v / len(out) for v in out], rel=1e-5)
    assert t["forward"][-1]["activation"] is None  # the slice ends at the 2nd Linear's output


def test_slice_keeps_the_presets_loss_when_it_fits():
    layers = [{"type": "Linear", "out_features": 2}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]
    t = backprop_trace(tiny(layers, {"type": "SGD", "lr": 0.1}), first_layers=1)
    assert t["loss"]["type"] == "CrossEntropyLoss" and t["layers_shown"] == 1


def test_other_layers_are_refused():
    exp = tiny([{"type": "Linear", "out_features": 3}, {"type": "Dropout", "p": 0.5}, {"type": "Linear", "out_features": 2}], {"type": "SGD", "lr": 0.1})
    with pytest.raises(UserError, match="Dropout"):
        backprop_trace(exp)


def test_stage_tables_carry_the_traces_numbers():
    from dlviz.analysis.backprop import STAGES, stage_tables

    t = backprop_trace(tiny(THREE_LAYERS, {"type": "Adam", "lr": 0.01}), sample=1)
    tables = {stage: stage_tables(t, stage) for stage in STAGES}
    assert [len(tables[s]) for s in STAGES] == [3, 1, 3, 3]
    assert [r["z = w·x + b"] for r in tables["forward"][0][1]] == [n["z"] for n in t["forward"][0]["neurons"]]
    assert [r["dL/d output"] for r in tables["loss"][0][1]] == t["loss"]["dL_doutput"]
    assert tables["backward"][0][0] == t["backward"][0]["layer"] == "model.layers[4]"
    update = tables["update"][0][1]
    assert len(update) == 4 * 2 + 4 and update[0]["new"] == t["update"]["layers"][0]["weights"][0][0]["new"]
