"""The Playground's engine: neuron maps against a hooked forward pass, edits of a running training against torch.optim
and hand-written loops, clicked points in the preset, and the network edits with their limits."""

import copy
import queue
import threading

import numpy as np
import pytest
import torch
from torch import nn

from dlviz.errors import UserError
from dlviz.export.script import script
from dlviz.model.build import build_model
from dlviz.model.neurons import decode, frame, hidden_space, maps, plane_grid
from dlviz.preset import playground, share
from dlviz.preset.schema import validate
from dlviz.runtime import featurize
from dlviz.training.board import BoardCallback
from dlviz.training.trainer import Control, Trainer


def doc(**data):
    d = playground.default_doc()
    d["data"].update(data)
    d["training"]["epochs"] = 3
    return d


def test_each_neurons_map_equals_a_forward_pass_with_hooks_at_the_same_grid_points():
    d = playground.edit(doc(name="spiral", features=["x1", "x2", "sin(x1)"]), {"kind": "activation", "layer": 1, "value": "ReLU"})
    exp = validate(d)
    model = build_model(exp, seed=0)
    hidden, out = maps(model, exp.data.features, 6.0, "classification", n=13, out_n=9)
    captured = {}
    acts = [m for m in model.layers if not isinstance(m, nn.Linear)]
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: captured.__setitem__(k, o.detach())) for k, m in enumerate(acts)]
    try:
        grid = plane_grid(6.0, 13)
        with torch.no_grad():
            model(torch.tensor(featurize(grid, exp.data.features), dtype=torch.float32))
    finally:
        for h in hooks:
            h.remove()
    assert [h.shape for h in hidden] == [(4, 13, 13), (2, 13, 13)]
    for k in range(2):
        # unit j's map at row r, column c is the hooked output at the grid point r·n + c
        assert np.allclose(hidden[k], captured[k].numpy().T.reshape(-1, 13, 13), atol=1e-6)
    # the grid's row 0 is the top of the plane, column 0 its left
    assert grid[0].tolist() == [-6.0, 6.0] and grid[12].tolist() == [6.0, 6.0] and grid[-1].tolist() == [6.0, -6.0]
    with torch.no_grad():
        p = torch.sigmoid(model(torch.tensor(featurize(plane_grid(6.0, 9), exp.data.features), dtype=torch.float32)))[:, 0]
    assert np.allclose(out, (2 * p - 1).reshape(9, 9).numpy(), atol=1e-6)
    f = frame(model, exp.data.features, 6.0, "classification", n=13, out_n=9)
    assert np.allclose(decode(f["hidden"][1][0], 13), np.clip(hidden[1][0], -1, 1), atol=0.5 / 127 + 1e-9)
    assert f["weights"][0] == model.layers[0].weight.double().tolist()


def _paused_trainer(exp):
    control = Control(run_event=threading.Event(), commands=queue.Queue())  # paused before its first step
    frames = []
    tr = Trainer(exp, [BoardCallback(frames.append, extent=6.0, n=8, out_n=8)], control=control)
    thread = threading.Thread(target=tr.run, daemon=True)
    thread.start()
    return tr, control, frames, thread


def _wait_paused_at(tr, control, step, timeout=30):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tr.step == step and tr.status == "paused" and not control.run_event.is_set():
            return
        time.sleep(0.01)
    raise AssertionError(f"the run did not pause at step {step} (step {tr.step}, {tr.status})")


def test_a_learning_rate_change_mid_run_matches_torch_optim_from_that_step_on():
    d = doc(name="xor", num_samples=200)
    d["optimizer"] = {"type": "Adam", "lr": 0.01}
    exp = validate(d)
    tr, control, _, thread = _paused_trainer(exp)
    ref = copy.deepcopy(tr.model)
    try:
        control.commands.put({"kind": "step", "count": 3})
        _wait_paused_at(tr, control, 3)
        control.commands.put({"kind": "lr", "value": 0.2})
        control.commands.put({"kind": "step", "count": 4})
        _wait_paused_at(tr, control, 7)
        got = [p.detach().clone() for p in tr.model.parameters()]
    finally:
        control.stop()
        thread.join(30)
    # the same steps by hand: torch.optim.Adam, its rate set to 0.2 before step 3
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    ds = tr.dataset
    perm = torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(exp.seed))
    for step in range(7):
        if step == 3:
            for g in opt.param_groups:
                g["lr"] = 0.2
        idx = perm[step * 10 : step * 10 + 10]
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(ref(ds.x_train[idx])[:, 0], ds.y_train[idx].float())
        loss.backward()
        opt.step()
    for a, b in zip(got, ref.parameters()):
        assert torch.allclose(a, b.detach(), atol=1e-6)


def test_a_typed_weight_is_the_models_weight_at_the_next_step_and_in_the_frame_at_once():
    exp = validate(doc(name="circle", num_samples=100))
    tr, control, frames, thread = _paused_trainer(exp)
    seen = []
    tr.model.layers[2].register_forward_pre_hook(lambda mod, args: seen.append(float(mod.weight[1, 3].detach())) if mod.training else None)
    try:
        _wait_paused_at(tr, control, 0)
        control.commands.put({"kind": "weight", "layer": 1, "out": 1, "in": 3, "value": 2.5})
        control.commands.put({"kind": "weight", "layer": 0, "out": 0, "in": None, "value": -1.25})
        control.commands.put({"kind": "step", "count": 1})
        _wait_paused_at(tr, control, 1)
    finally:
        control.stop()
        thread.join(30)
    assert seen[0] == 2.5  # the step's forward pass ran with the typed weight
    edited = next(f["frame"] for f in frames if f["frame"]["weights"][1][1][3] == 2.5)
    assert edited["step"] == 0 and edited["biases"][0][0] == -1.25


def test_regularization_and_points_change_while_training():
    exp = validate(doc(name="gauss", num_samples=100))
    tr, control, frames, thread = _paused_trainer(exp)
    try:
        _wait_paused_at(tr, control, 0)
        n = len(tr.dataset.x_train)
        control.commands.put({"kind": "regularization", "l1": 0.0, "l2": 0.5})
        control.commands.put({"kind": "points", "rows": [[1.0, 2.0, 1.0], [-3.0, 0.5, 0.0]]})
        control.commands.put({"kind": "step", "count": 6})
        _wait_paused_at(tr, control, 6)
    finally:
        control.stop()
        thread.join(30)
    assert tr.l2 == 0.5 and len(tr.dataset.x_train) == n + 2
    assert tr.dataset.x_train[-1].tolist() == [-3.0, 0.5] and tr.dataset.y_train[-2:].tolist() == [1, 0]
    assert tr.dataset.points_train[-2].tolist() == [1.0, 2.0]
    assert frames[-1]["frame"]["step"] == 6 and frames[-1]["frame"]["status"] in ("paused", "stopped")


def test_clicked_points_are_in_the_preset_the_share_link_and_the_exported_script():
    d = doc(name="spiral", points=[[1.5, -2.0, 1], [0.25, 4.0, 0]])
    exp = validate(d)
    back = share.decode(share.encode(exp))
    assert back.data.points == [[1.5, -2.0, 1.0], [0.25, 4.0, 0.0]]
    assert "POINTS = [[1.5, -2.0, 1.0], [0.25, 4.0, 0.0]]" in script(exp)


@pytest.mark.parametrize(
    "rows, path",
    [([[1, 2]], "data.points[0]"), ([[1, 2, 0.5]], "data.points[0]"), ([[1, float("nan"), 1]], "data.points[0]"), ([[99, 0, 1]], "data.points[0]")],
)
def test_bad_clicked_points_are_refused_with_their_place(rows, path):
    from dlviz.data.datasets import load_dataset

    with pytest.raises(UserError) as err:
        load_dataset(validate(doc(name="circle", points=rows)).data, 0)
    assert str(err.value).startswith(path)


def test_thousands_of_clicked_points_are_capped(monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_SAMPLES", "1000")
    with pytest.raises(UserError, match="DLVIZ_MAX_SAMPLES"):
        validate(doc(name="circle", points=[[0.0, 0.0, 1]] * 1001))


def test_network_edits_follow_playground_and_stop_at_its_limits(monkeypatch):
    d = playground.default_doc()
    d = playground.edit(d, {"kind": "units", "layer": 0, "delta": 1})
    d = playground.edit(d, {"kind": "layers", "delta": 1})
    d = playground.edit(d, {"kind": "feature", "name": "x1^2", "on": True})
    net = playground.network(d)
    assert net.hidden == ((5, "Tanh"), (2, "Tanh"), (2, "Tanh")) and net.features == ("x1", "x2", "x1^2")
    assert validate(d).model.input_shape == [3]
    d = playground.edit(d, {"kind": "activation", "layer": 2, "value": "Linear"})
    assert playground.network(d).hidden[2] == (2, "Linear")
    for _ in range(3):
        d = playground.edit(d, {"kind": "units", "layer": 0, "delta": 1})
    with pytest.raises(UserError, match="DLVIZ_PLAYGROUND_UNITS"):
        playground.edit(d, {"kind": "units", "layer": 0, "delta": 1})
    monkeypatch.setenv("DLVIZ_PLAYGROUND_LAYERS", "3")
    with pytest.raises(UserError, match="at most 3 hidden layers"):
        playground.edit(d, {"kind": "layers", "delta": 1})
    with pytest.raises(UserError, match="at least one input feature"):
        one = playground.edit(playground.default_doc(), {"kind": "feature", "name": "x1", "on": False})
        playground.edit(one, {"kind": "feature", "name": "x2", "on": False})


def test_a_preset_that_is_no_playground_network_says_where():
    d = playground.default_doc()
    d["model"]["layers"].insert(2, {"type": "Dropout", "p": 0.5})
    with pytest.raises(UserError) as err:
        playground.network(d)
    assert str(err.value).startswith("model.layers[2]")


def test_hidden_space_of_a_two_neuron_layer_is_its_own_coordinates():
    exp = validate(doc(name="xor"))
    model = build_model(exp, seed=0)
    pts = np.array([[1.0, 2.0], [-3.0, 0.5]])
    lines, projected, axes = hidden_space(model, 1, exp.data.features, 6.0, pts, n=5)
    with torch.no_grad():
        h = model.layers[3](model.layers[2](model.layers[1](model.layers[0](torch.tensor(pts, dtype=torch.float32)))))
    assert np.allclose(projected, h.numpy(), atol=1e-6) and axes == ("neuron 1", "neuron 2")
    assert lines.shape == (2, 5, 5, 2)


def test_a_curves_maps_are_functions_of_x_and_its_frame_carries_the_prediction_along_x():
    d = playground.with_data(playground.default_doc(), "curve-cubic")
    d["data"]["points"] = [[0.5, 0.0, 2.0]]
    exp = validate(d)
    assert playground.network(d).features == playground.ONE_D and exp.model.input_shape == [1]
    model = build_model(exp, seed=0)
    f = frame(model, playground.ONE_D, 3.0, "regression", n=9, out_n=7)
    first = decode(f["hidden"][0][0], 9)
    assert np.allclose(first, first[0:1].repeat(9, 0))  # every row the same: a function of x alone
    xs = torch.linspace(-3, 3, 7, dtype=torch.float64).float().reshape(-1, 1)
    with torch.no_grad():
        assert np.allclose(f["curve"], model(xs)[:, 0].numpy(), atol=1e-6)
    assert "output" not in f
    from dlviz.data.datasets import load_dataset

    ds = load_dataset(exp.data, 0)
    assert ds.x_train[-1].tolist() == [0.5] and ds.y_train[-1].tolist() == [2.0]
    assert "POINTS = [[0.5, 0.0, 2.0]]" in script(exp) and "add_points(xs, ys, POINTS)" in script(exp)


def test_switching_between_planes_and_curves_keeps_the_input_size_right():
    d = playground.edit(playground.default_doc(), {"kind": "feature", "name": "sin(x1)", "on": True})
    curve = playground.with_data(d, "curve-sin")
    assert validate(curve).model.input_shape == [1] and "features" not in curve["data"]
    with pytest.raises(UserError, match="one input"):
        playground.edit(curve, {"kind": "feature", "name": "x2", "on": True})
    back = playground.with_data(curve, "spiral")
    assert validate(back).model.input_shape == [2] and playground.data_choice(curve) == "curve-sin"
