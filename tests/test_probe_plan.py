"""The default unit-health probes: how often and on how many samples, decided from the model alone so that they take a
bounded share of training on any model, and the unit statistics against the formula they replaced."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlviz.preset import gallery, playground
from dlviz.preset.registry import RELU_FAMILY, SATURATING
from dlviz.preset.schema import validate
from dlviz.training import telemetry as tm
from dlviz.training.trainer import Callback, Trainer


def cadence(total_steps: int) -> int:
    """The interval every model got before probes were costed: about 30 probes a run, at most 50 steps apart."""
    return max(1, min(50, total_steps // 30))


F = torch.nn.functional
SQUASH = {"ReLU": F.relu, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid, "Hardtanh": F.hardtanh, "Softsign": F.softsign}


def old_unit_health(kind: str, y: torch.Tensor) -> dict:
    """unit_health as first written: std_mean in one call, units' maxima through a transposed copy, min and max apart."""
    y = y.float()
    std, mean = torch.std_mean(y)
    out = {"mean": mean, "std": std}
    if kind in RELU_FAMILY and y.dim() >= 2:
        per_unit = y.amax(0) if y.dim() == 2 else y.transpose(0, 1).reshape(y.shape[1], -1).amax(1)
        out["dead"] = torch.mean(per_unit <= 0, dtype=torch.float32)
    if kind in SATURATING:
        if kind == "Hardtanh":
            sat = (y <= y.min()) | (y >= y.max())
        else:
            lo, hi = tm.SATURATION[kind]
            c = (lo + hi) / 2
            sat = (y - c if c else y).abs() >= (hi - lo) / 2
        out["saturated"] = torch.mean(sat, dtype=torch.float32)
    return out


@pytest.mark.parametrize("shape", [(64, 16, 12, 12), (64, 16, 30), (256, 24)])
@pytest.mark.parametrize("kind", ["ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Hardtanh", "Softsign"])
def test_unit_health_gives_the_old_formula_s_numbers(kind, shape):
    g = torch.Generator().manual_seed(len(shape))
    y = torch.randn(shape, generator=g) * 2 + 0.3
    y[:, :5] = -y[:, :5].abs()  # five units never positive: dead
    y[0, 5] = -1.0
    y[1:, 5] = y[1:, 5].abs() + 0.1  # a unit positive for all but one sample (and position) is alive
    if kind in SQUASH:  # into the kind's range, with some values on its edges
        y = SQUASH[kind](y)
    new, old = tm.unit_health(kind, y), old_unit_health(kind, y)
    assert new.keys() == old.keys()
    if kind in RELU_FAMILY:
        assert new["dead"].item() == pytest.approx(5 / shape[1])
    for key in old:
        assert new[key].item() == pytest.approx(old[key].item(), rel=1e-6, abs=1e-7), key
    far = torch.randn(shape, generator=g, dtype=torch.float64) + 100  # far from 0: against float64's own mean and std
    health = tm.unit_health(kind, far)
    assert health["mean"].item() == pytest.approx(far.mean().item(), rel=1e-6)
    assert health["std"].item() == pytest.approx(far.std().item(), rel=1e-4)


def test_small_networks_are_probed_as_before():
    exp = validate(playground.default_doc())
    small = {"xor": gallery.load("xor"), "playground": exp, "spiral-tanh": gallery.load("spiral-tanh")}
    for name, e in small.items():
        tr = Trainer(e)
        steps = e.training.epochs * tr.steps_per_epoch
        assert tr.telemetry_every == cadence(steps), name
        assert len(tr.probe_x) == min(256, len(tr.dataset.x_train)), name
        for total in (1, 48, 59, 60, 400, 1500, 100_000) if name != "spiral-tanh" else ():  # and for any length of run
            assert tm.probe_plan(tr.model.footprint.saved, e.data.batch_size, total, len(tr.dataset.x_train))[1] == cadence(total), (name, total)


@pytest.mark.parametrize("name", ["detection-yolo", "segmentation-unet", "lenet5-mnist"])
def test_image_models_are_probed_on_fewer_samples_less_often_and_always_alike(name):
    doc = gallery.raw(name)
    doc["training"].pop("telemetry_every", None)
    exp = validate(doc)
    a, b = Trainer(exp), Trainer(exp)
    assert (a.telemetry_every, len(a.probe_x)) == (b.telemetry_every, len(b.probe_x))  # from the preset alone
    # the work of one sample's pass, counted here from the layers' output shapes: every layer's output and the input
    model = a.model
    shapes = []
    blocks, groups = ("Residual", "Concat"), torch.nn.Sequential  # a block's output is a new tensor, a group's is its last layer's
    layers = [m for m in model.modules() if type(m).__name__ in blocks or not (list(m.children()) or isinstance(m, groups))]
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(o.shape[1:])) for m in layers]
    model(a.probe_x[:1])
    for h in hooks:
        h.remove()
    saved = math.prod(exp.model.input_shape) + sum(math.prod(s) for s in shapes)
    assert saved == model.footprint.saved
    n, every = len(a.probe_x), a.telemetry_every
    assert tm.MIN_PROBE_SAMPLES <= n <= 256 and (n == tm.MIN_PROBE_SAMPLES or n * saved <= tm.PROBE_ELEMENTS)
    probe = n * saved * tm.PROBE_WORK
    step = 3 * exp.data.batch_size * saved + tm.STEP_FIXED
    assert every > cadence(exp.training.epochs * a.steps_per_epoch)  # these models are the ones probes slowed down
    assert probe / (every * step) <= tm.PROBE_SHARE < probe / ((every - 1) * step)  # at most 5 % of the work, and no less often


def test_a_preset_s_own_interval_wins_and_a_snapshot_names_its_probe_samples():
    doc = gallery.raw("segmentation-unet")
    doc["training"]["telemetry_every"] = 2
    seen = []

    class Snapshots(Callback):
        def on_telemetry(self, trainer, snapshot):
            seen.append(snapshot)

    tr = Trainer(validate(doc), [Snapshots()])
    tr.stop_after_steps = 3
    tr.run()
    assert tr.telemetry_every == 2 and [s["step"] for s in seen] == [0, 2]
    assert {s["probe_samples"] for s in seen} == {tm.MIN_PROBE_SAMPLES}


@settings(max_examples=200, deadline=None)
@given(
    saved=st.integers(1, 5_000_000),
    batch=st.integers(1, 512),
    total=st.integers(1, 200_000),
    available=st.integers(1, 60_000),
)
def test_the_plan_bounds_the_probes_share_and_never_probes_more_often_than_before(saved, batch, total, available):
    samples, every, cost = tm.probe_plan(saved, batch, total, available)
    assert 1 <= samples <= min(256, available) and (samples >= tm.MIN_PROBE_SAMPLES or samples == available)
    assert every >= cadence(total) and cost / every <= tm.PROBE_SHARE * (1 + 1e-12)
    assert (samples, every, cost) == tm.probe_plan(saved, batch, total, available)
