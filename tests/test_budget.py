"""Memory budgets of the computations the server runs for a page: the estimate against what is really held, and the
computations kept within the budget (refused with a sentence, or split into smaller batches with the same result)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import preset
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dlviz.analysis import features, receptive, surface
from dlviz.errors import UserError
from dlviz.model import budget
from dlviz.model.build import build_model, summarize
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.fit import check_fit
from dlviz.training.losses import make_objective

MB = 1_000_000
# What a computation may hold beyond the activations it is budgeted for: torch's and glibc's allocation rounding,
# convolution workspaces, NumPy copies of one map.
SLACK = 48 * MB


def peak_growth(fn):
    """(fn's result or the UserError it raised, how far this process's peak resident memory rose above where it stood
    before). The kernel's peak (VmHWM) is reset to the current RSS first, by writing 5 to /proc/self/clear_refs."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    try:
        result = fn()
    except UserError as err:
        result = err
    return result, _status("VmHWM") - before


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(field)


def hostile(channels: int = 96, relus: int = 40, upsample: int = 4) -> dict:
    """A valid preset whose every layer is small, but whose layers together hold a great deal: MNIST upsampled, one wide
    convolution, then a run of ReLUs, each keeping its own full-size output."""
    layers = [{"type": "Upsample", "scale_factor": upsample}, {"type": "Conv2d", "out_channels": channels, "kernel_size": 3, "padding": 1}]
    layers += [{"type": "ReLU"} for _ in range(relus)]
    layers += [{"type": "AdaptiveAvgPool2d", "output_size": 1}, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]
    doc = preset(layers, [1, 28, 28])
    doc.update(data={"name": "mnist", "batch_size": 32}, loss={"type": "CrossEntropyLoss"}, optimizer={"type": "SGD", "lr": 0.1})
    return doc


def hook_elements(net, x) -> int:
    """Elements of the distinct tensors that every layer and block of the preset outputs for `x`, counted by forward
    hooks (as the feature maps keep them): the reference for Footprint.saved."""
    seen = {x.data_ptr(): x.numel()}
    kept = []  # a tensor freed during the pass could hand its memory, and so its address, to a later one

    def note(module, inputs, output):
        kept.append(output)
        seen.setdefault(output.data_ptr(), output.numel())

    hooks = [net.get_submodule(name).register_forward_hook(note) for name in net.json_paths]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return sum(seen.values())


@pytest.mark.parametrize("name", ["xor", "lenet5-mnist", "cnn-digits", "deep-cnn-residual", "inception-digits"])
def test_saved_elements_are_what_hooks_on_every_layer_see(name):
    exp = gallery.load(name)
    net = build_model(exp, seed=0)
    fp = budget.footprint(summarize(exp, count_flops=False))
    assert fp == net.footprint
    # exact but for layers whose output is a view of their input (Flatten), which the estimate counts again
    views = sum(math.prod(r.output_shape) for r in summarize(exp).rows if r.type in ("Flatten", "Unflatten", "Identity"))
    assert hook_elements(net, net.example_input()) <= fp.saved <= hook_elements(net, net.example_input()) + views
    assert fp.params == sum(p.numel() for p in net.parameters())


def test_peak_counts_a_residual_blocks_input_while_its_body_runs():
    body = [{"type": "Linear", "out_features": 64}, {"type": "ReLU"}, {"type": "Linear", "out_features": 8}]
    plain = budget.footprint(summarize(validate(preset(body, [8]))))
    boxed = budget.footprint(summarize(validate(preset([{"type": "Residual", "body": body}], [8]))))
    assert plain.peak == 64 + 2 * 64  # the widest layer: the ReLU, 64 in and 64 out (counted twice, as a layer may write it twice)
    assert boxed.peak == plain.peak + 8 + 8  # plus the block's input (kept for the shortcut) and its output


def test_feature_maps_over_the_budget_are_refused_before_anything_is_allocated(monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_COMPUTE_BYTES", str(100 * MB))
    exp = validate(hostile())
    net = features.load_model(exp)
    need = budget.feature_maps_bytes(net.footprint)
    assert need > 300 * MB
    x = net.example_input()
    result, grew = peak_growth(lambda: features.feature_maps(net, x))
    assert isinstance(result, UserError), "the feature maps were computed"
    assert "DLVIZ_MAX_COMPUTE_BYTES" in result.message and "100 MB" in result.message
    assert grew < 20 * MB


def test_effective_fields_run_in_groups_that_fit_and_give_the_same_map(monkeypatch):
    exp = gallery.load("cnn-digits")
    net = features.load_model(exp)
    x = torch.randn(1, *net.input_shape, generator=torch.Generator().manual_seed(0))
    path = next(r.path for r in summarize(exp).rows if r.type == "Conv2d")
    reference = receptive.input_gradient(net, x, path, (3, 3), list(range(8)))
    per_copy = budget.gradient_bytes_per_copy(net.footprint)
    monkeypatch.setenv("DLVIZ_MAX_COMPUTE_BYTES", str(3 * per_copy))  # three copies at a time: groups of 3, 3 and 2
    grouped = receptive.input_gradient(net, x, path, (3, 3), list(range(8)))
    np.testing.assert_allclose(grouped, reference, rtol=1e-6, atol=1e-9)
    monkeypatch.setenv("DLVIZ_MAX_COMPUTE_BYTES", str(per_copy - 1))
    with pytest.raises(UserError, match="DLVIZ_MAX_COMPUTE_BYTES"):
        receptive.input_gradient(net, x, path, (3, 3), [0])


def test_surface_losses_in_batches_that_fit_equal_one_pass(monkeypatch):
    problem = surface.make_problem(gallery.load("lenet5-mnist"), samples=200)
    with torch.no_grad():
        reference = float(problem.objective.loss(problem.model(problem.x), problem.y))
    monkeypatch.setenv("DLVIZ_MAX_COMPUTE_BYTES", str(7 * budget.forward_bytes_per_sample(problem.model.footprint)))
    assert len(problem.outputs()) == 200
    assert problem.loss() == pytest.approx(reference, rel=1e-6)
    w = problem.weights()
    d = surface.random_directions(w, 1, seed=0)
    looped = surface.evaluate_loop(problem, w, d, np.array([[0.0], [0.5]]))
    assert looped[0] == pytest.approx(reference, rel=1e-6)


def test_a_surface_over_its_operations_budget_runs_on_fewer_samples_and_says_so(monkeypatch):
    problem = surface.make_problem(gallery.load("spiral-tanh"), samples=400)
    points = 11 * 11
    monkeypatch.setenv("DLVIZ_MAX_SURFACE_FLOPS", str(points * problem.flops * 150))
    s = surface.network_surface(problem, "random", 1.0, 11)
    assert (s.samples, s.samples_asked) == (150, 400)
    cut = surface.Problem(problem.model, problem.objective, problem.x[:150], problem.y[:150])
    assert s.center_loss == pytest.approx(cut.loss(), rel=1e-6)
    monkeypatch.setenv("DLVIZ_MAX_SURFACE_FLOPS", str(points * problem.flops - 1))
    with pytest.raises(UserError, match="DLVIZ_MAX_SURFACE_FLOPS"):
        surface.network_surface(problem, "random", 1.0, 11)


def test_a_hostile_surface_is_refused_when_one_sample_does_not_fit(monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_COMPUTE_BYTES", str(5 * MB))  # one sample's widest layer holds 9.6 MB
    with pytest.raises(UserError, match="loss surface of this model would need about"):
        surface.make_problem(validate(hostile()))


# ---------------------------------------------------------------- property: random models within the limits


def conv_stack(draw):
    """A random convolutional preset on MNIST within the limits: an optional upsampling, a few convolutions and
    activations, a head."""
    layers = []
    if draw(st.booleans()):
        layers.append({"type": "Upsample", "scale_factor": draw(st.integers(2, 4))})
    for _ in range(draw(st.integers(1, 3))):
        layers.append({"type": "Conv2d", "out_channels": draw(st.sampled_from([4, 32, 128])), "kernel_size": 3, "padding": 1})
        layers += [{"type": draw(st.sampled_from(["ReLU", "Tanh", "Sigmoid"]))} for _ in range(draw(st.integers(0, 4)))]
    layers += [{"type": "AdaptiveAvgPool2d", "output_size": 1}, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]
    doc = preset(layers, [1, 28, 28])
    doc.update(data={"name": "mnist", "batch_size": 32}, loss={"type": "CrossEntropyLoss"}, optimizer={"type": "SGD", "lr": 0.1})
    return doc


def within_budget(examples: int):
    """The property below, on `examples` random models (a failing one is printed whole: shrinking it costs minutes)."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, phases=[Phase.explicit, Phase.generate]
    )


@within_budget(6)
@given(st.data())
def test_inspect_and_landscape_computations_stay_within_their_budget(data):
    computations_stay_within_their_budget(data)


@pytest.mark.slow
@within_budget(80)
@given(st.data())
def test_many_more_models_stay_within_their_budget(data):
    computations_stay_within_their_budget(data)


def computations_stay_within_their_budget(data):
    limit = 64 * MB
    old = os.environ.get("DLVIZ_MAX_COMPUTE_BYTES")
    os.environ["DLVIZ_MAX_COMPUTE_BYTES"] = str(limit)
    try:
        exp = validate(conv_stack(data.draw))
        net = features.load_model(exp)
        x = net.example_input()
        conv = next(r.path for r in summarize(exp).rows if r.type == "Conv2d")
        problem = surface.Problem(
            net, make_objective(exp.loss, "classification", 10, (), [10]), torch.randn(200, *net.input_shape), torch.randint(0, 10, (200,))
        )
        for name, fn in (
            ("feature maps", lambda: features.feature_maps(net, x)),
            ("effective field", lambda: receptive.input_gradient(net, x, conv, (2, 2), list(range(4)))),
            ("surface batch", problem.loss),
        ):
            result, grew = peak_growth(fn)
            if isinstance(result, UserError):
                assert "DLVIZ_MAX_COMPUTE_BYTES" in result.message
            assert grew <= limit + SLACK, f"{name} grew the peak by {grew / MB:.0f} MB on {exp.to_dict()['model']}"
    finally:
        if old is None:
            os.environ.pop("DLVIZ_MAX_COMPUTE_BYTES", None)
        else:
            os.environ["DLVIZ_MAX_COMPUTE_BYTES"] = old


# ---------------------------------------------------------------- training


def test_training_that_would_not_fit_is_refused_with_a_batch_size_that_would():
    exp = validate({**hostile(channels=64, relus=2, upsample=8), "data": {"name": "mnist", "batch_size": 4096}})
    with pytest.raises(UserError) as err:
        check_fit(exp, (1, 28, 28), "classification", 10, ())
    assert err.value.path == "data.batch_size"
    message = err.value.message
    assert "at batch size 4,096" in message and "DLVIZ_MAX_TRAIN_BYTES" in message
    fits = int(message.split("use a batch size of ")[1].split(" ")[0].replace(",", ""))
    fp = budget.footprint(summarize(exp, count_flops=False))
    # the batch size it names is the largest that fits: one more sample would not
    assert budget.training_bytes(fp, fits) <= 2_000_000_000 < budget.training_bytes(fp, fits + 1)
    smaller = validate({**exp.to_dict(), "data": {"name": "mnist", "batch_size": fits}})
    check_fit(smaller, (1, 28, 28), "classification", 10, ())


def test_the_command_line_refuses_such_a_run_with_one_sentence(tmp_path):
    doc = {**hostile(channels=64, relus=2, upsample=8), "data": {"name": "mnist", "batch_size": 4096}}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc))
    done = subprocess.run([sys.executable, "-m", "dlviz", "train", str(path), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.batch_size: training would need about")
