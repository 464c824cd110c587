"""The 2-D optimizer lab and the network loss surface, checked against autograd, torch.optim, Distill's rates, Li et al.'s
definitions and the one-forward-per-point loop."""

import math

import numpy as np
import pytest
import torch

from dlviz.analysis import optimizer_lab as landscape
from dlviz.analysis import surface, surface_points
from dlviz.errors import UserError
from dlviz.figures import landscape as lf
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

ALL = [landscape.make_function(n) for n in landscape.FUNCTIONS] + [landscape.make_function("Quadratic ravine", kappa=100.0)]


def autograd(fn, x, y):
    p = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
    fn.f(p[0], p[1]).backward()
    return p.grad.numpy()


# ---------------------------------------------------------------- the functions


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.name)
def test_minima_have_the_known_value_zero_gradient_and_higher_neighbours(fn):
    if not fn.minima:  # the saddle: its stationary point is not a minimum
        assert fn.min_value is None
        assert np.allclose(autograd(fn, 0.0, 0.0), 0) and fn.value(0.01, 0) > 0 > fn.value(0, 0.01)
        return
    for mx, my in fn.minima:
        assert abs(fn.value(mx, my) - fn.min_value) < 1e-12
        assert np.abs(fn.grad(mx, my)).max() < 1e-9
        assert np.abs(autograd(fn, mx, my)).max() < 1e-9
        for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            assert fn.value(mx + 1e-3 * np.cos(angle), my + 1e-3 * np.sin(angle)) > fn.min_value


def test_himmelblau_has_four_minima_and_a_start_near_its_maximum():
    fn = landscape.make_function("Himmelblau")
    assert len(fn.minima) == 4 and len({(round(x, 3), round(y, 3)) for x, y in fn.minima}) == 4
    # the local maximum is at (−0.270845, −0.923039), f ≈ 181.617
    assert abs(fn.value(-0.270845, -0.923039) - 181.617) < 1e-3


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.name)
def test_hand_derived_gradients_match_autograd(fn):
    rng = np.random.default_rng(0)
    for _ in range(25):
        x, y = rng.uniform(*fn.x_range), rng.uniform(*fn.y_range)
        np.testing.assert_allclose(np.array(fn.grad(x, y), dtype=np.float64), autograd(fn, x, y), rtol=1e-10, atol=1e-10)


def test_ravine_eigenvalues_are_its_hessian():
    fn = landscape.make_function("Quadratic ravine", kappa=25.0)
    hess = torch.autograd.functional.hessian(lambda p: fn.f(p[0], p[1]), torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(np.linalg.eigvalsh(hess.numpy()), fn.eigenvalues, rtol=1e-12)


def test_function_arguments_are_checked():
    with pytest.raises(UserError, match="kappa"):
        landscape.make_function("Quadratic ravine", kappa=0.5)
    with pytest.raises(UserError, match="did you mean 'Rosenbrock'"):
        landscape.make_function("rosenbrok")


# ---------------------------------------------------------------- optimizer runs


RUNS = [
    ("SGD", {"lr": 1e-3}),
    ("SGD", {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.05}),
    ("RMSprop", {"lr": 0.01}),
    ("Adagrad", {"lr": 0.1}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("name,args", RUNS, ids=lambda v: str(v))
def test_trajectory_equals_a_direct_torch_optim_loop(name, args):
    fn = landscape.make_function("Rosenbrock")
    got = landscape.run_optimizer(fn, fn.start, name, args, 200)
    p = torch.tensor(fn.start, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, name)([p], **args)
    want = [p.detach().clone().numpy()]
    for _ in range(200):
        opt.zero_grad()
        ((1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2).backward()
        opt.step()
        want.append(p.detach().clone().numpy())
    np.testing.assert_array_equal(got.points, np.array(want))
    np.testing.assert_allclose(got.values, [fn.value(*q) for q in want], rtol=1e-12)
    assert not got.diverged and got.steps == 200


def plain_loop(fn, start, name, args, steps):
    """One optimizer alone, as a student would write it: torch.optim and autograd on a 2-element parameter, stopped
    when f, the gradient or the point stops being finite or the point leaves for good. Points, values, diverged."""
    far = landscape.ESCAPE * max(fn.x_range[1] - fn.x_range[0], fn.y_range[1] - fn.y_range[0])
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, name)([p], **args)
    points, values, diverged = [p.tolist()], [], False
    for _ in range(steps):
        opt.zero_grad()
        loss = fn.f(p[0], p[1])
        loss.backward()
        values.append(loss.item())
        if not (math.isfinite(values[-1]) and torch.isfinite(p.grad).all()):
            diverged = True
            break
        opt.step()
        if not torch.isfinite(p).all():
            diverged = True
            break
        points.append(p.tolist())
        if math.hypot(*points[-1]) > far:
            diverged = True
            break
    if len(values) < len(points):
        with torch.no_grad():
            values.append(fn.f(p[0], p[1]).item())
    return np.array(points), np.array(values), diverged


# one learning rate per function that leaves the plot after a few steps, while the rest of the race goes on; Ackley's
# gradient is bounded, so no learning rate the lab allows (≤ 100) leaves its plot
WILD = {
    "Rosenbrock": ("SGD", {"lr": 0.01}),
    "Beale": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "Himmelblau": ("SGD", {"lr": 0.1}),
    "Rastrigin": ("SGD", {"lr": 3.0}),
    "Saddle": ("SGD", {"lr": 0.25}),
    "Quadratic ravine": ("SGD", {"lr": 0.25}),
}


# every optimizer of the registry, 17 runs with the wild one: more than twice a vector register's float64 lanes, so the
# stacked evaluation of f takes the CPU kernels' vectorized paths as well as their one-element paths
RACE = [
    ("SGD", {"lr": 1e-3}),
    ("SGD", {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 1e-4, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 1e-3, "betas": [0.5, 0.9]}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.5, "lr_decay": 0.01}),
    ("Adadelta", {"lr": 1.0}),
    ("NAdam", {"lr": 0.01}),
    ("RAdam", {"lr": 0.01}),
    ("Adamax", {"lr": 0.02}),
    ("SGD", {"lr": 3e-4}),
]


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f"{f.name} {f.eigenvalues or ''}")
def test_a_race_equals_plain_torch_optim_loops_bit_for_bit(fn):
    # the race evaluates f once a step on all runs' points stacked; the wild run drops out of it mid-race
    race = list(RACE)
    if fn.name in WILD:
        race.insert(1, WILD[fn.name])
    steps = 100
    got = landscape.run_optimizers(fn, fn.start, race, steps)
    for (name, args), t in zip(race, got):
        points, values, diverged = plain_loop(fn, fn.start, name, args, steps)
        np.testing.assert_array_equal(t.points, points)
        np.testing.assert_array_equal(t.values, values)
        assert t.points.tobytes() == points.tobytes() and t.values.tobytes() == values.tobytes()  # the signs of zeros too
        assert t.diverged == diverged
    assert sum(not t.diverged and t.steps == steps for t in got) >= len(RACE) - 2
    if fn.name in WILD:
        assert got[1].diverged and 1 < got[1].steps < steps and got[1].reason.startswith("left the plot for good")


def test_a_diverging_optimizer_stops_cleanly_and_leaves_the_plot():
    fn = landscape.make_function("Rosenbrock")
    fine, wild = landscape.run_optimizers(fn, fn.start, [("Adam", {"lr": 0.1}), ("SGD", {"lr": 100.0})], 500)
    assert not fine.diverged and fine.steps == 500
    assert wild.diverged and wild.steps < 500 and wild.reason
    assert np.isfinite(wild.points).all() and wild.steps_to_tolerance is None
    assert np.abs(wild.points[-1]).max() > fn.x_range[1]  # drawn leaving the plot
    fig = lf.lab_contour(fn, [fine, wild])
    assert list(fig.layout.xaxis.range) == list(fn.x_range)
    lf.lab_surface(fn, [fine, wild])
    lf.lab_loss(fn, [fine, wild])
    table = lf.trajectory_table([fine, wild], 1e-3)
    assert table["status"].iloc[1].startswith("diverged")


def test_steps_to_tolerance_counts_from_where_the_run_stays_close():
    assert landscape.steps_to_tolerance(np.array([5, 0.5, 0.01, 0.2, 0.001, 0.0005]), 0.01) == 4
    assert landscape.steps_to_tolerance(np.array([5, 0.001, 0.5]), 0.01) is None
    assert landscape.steps_to_tolerance(np.array([0.0]), 0.01) == 0
    fn = landscape.make_function("Himmelblau")
    t = landscape.run_optimizer(fn, fn.start, "SGD", {"lr": 0.01}, 300)
    d = fn.distance_to_minimum(t.points)
    k = t.steps_to_tolerance
    assert k is not None and (d[k:] <= 1e-3).all() and d[k - 1] > 1e-3
    assert t.final_distance == d[-1] < 1e-9


def test_optimizer_arguments_are_checked_with_their_path():
    fn = landscape.make_function("Rosenbrock")
    with pytest.raises(UserError, match=r"optimizers\[1\]\.lr"):
        landscape.run_optimizers(fn, fn.start, [("SGD", {"lr": 0.1}), ("SGD", {"lr": -1.0})], 10)
    with pytest.raises(UserError, match="Nesterov"):
        landscape.run_optimizer(fn, fn.start, "SGD", {"lr": 0.1, "nesterov": True}, 10)
    with pytest.raises(UserError, match="did you mean 'Adam'"):
        landscape.run_optimizer(fn, fn.start, "adam", {}, 10)


# ---------------------------------------------------------------- Distill's rates


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_measured_rates_match_distill_within_one_percent(kappa):
    check = landscape.rate_check(kappa, steps=300)
    root = math.sqrt(kappa)
    assert check.gd_theory == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-12)
    assert check.momentum_theory == pytest.approx((root - 1) / (root + 1), rel=1e-12)
    assert check.gd_alpha == pytest.approx(2 / (1 + kappa)) and check.momentum_alpha == pytest.approx((2 / (1 + root)) ** 2)
    assert check.momentum_beta == pytest.approx(((root - 1) / (root + 1)) ** 2)
    assert abs(check.gd_measured / check.gd_theory - 1) < 0.01
    assert abs(check.momentum_measured / check.momentum_theory - 1) < 0.01
    assert check.momentum_measured < check.gd_measured  # momentum is faster, by √κ against κ
    lf.rate_figure(check)
    assert len(lf.rate_table(check)) == 2


def test_measured_rate_of_a_geometric_sequence_and_of_a_run_stopped_at_zero():
    assert landscape.measured_rate(0.7 ** np.arange(100)) == pytest.approx(0.7, rel=1e-12)
    assert landscape.measured_rate(np.r_[0.5 ** np.arange(30), np.zeros(20)]) == pytest.approx(0.5, rel=1e-12)
    assert math.isnan(landscape.measured_rate(np.array([1.0, 0.0])))


# ---------------------------------------------------------------- the network's surface

CNN = {
    "format": "dlviz-preset/1",
    "name": "cnn",
    "seed": 0,
    "data": {"name": "digits", "val_fraction": 0.2, "batch_size": 32},
    "model": {
        "input_shape": [1, 8, 8],
        "layers": [
            {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
            {"type": "BatchNorm2d"},
            {"type": "Tanh"},
            {"type": "AvgPool2d", "kernel_size": 2},
            {"type": "Residual", "body": [{"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "ReLU"}]},
            {"type": "Concat", "branches": [[{"type": "Conv2d", "out_channels": 2, "kernel_size": 1}], [{"type": "MaxPool2d", "kernel_size": 1}]]},
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 10},
        ],
    },
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9},
}
SEQ = {
    "format": "dlviz-preset/1",
    "name": "seq",
    "seed": 0,
    "data": {"name": "sine", "num_samples": 200, "seq_len": 12, "batch_size": 32},
    "model": {"input_shape": [12, 1], "layers": [{"type": "LSTM", "hidden_size": 6}, {"type": "Linear", "out_features": 1}]},
    "loss": {"type": "MSELoss"},
    "optimizer": {"type": "Adam", "lr": 0.01},
}
FLAT_FIRST = {
    "format": "dlviz-preset/1",
    "name": "mlp",
    "seed": 0,
    "data": {"name": "digits", "val_fraction": 0.2, "batch_size": 32},
    "model": {
        "input_shape": [1, 8, 8],
        "layers": [
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 12},
            {"type": "Tanh"},
            {"type": "Dropout", "p": 0.5},
            {"type": "Linear", "out_features": 10, "bias": False},
        ],
    },
    "loss": {"type": "CrossEntropyLoss", "label_smoothing": 0.1},
    "optimizer": {"type": "SGD", "lr": 0.1},
}


@pytest.fixture(scope="module")
def spiral():
    return surface.make_problem(gallery.load("spiral-tanh"), samples=300)


def grid(radius, n):
    a = surface.axis(radius, n)
    aa, bb = np.meshgrid(a, a)
    return np.stack([aa.ravel(), bb.ravel()], axis=1)


def test_filter_normalization_follows_its_definition():
    problem = surface.make_problem(validate(CNN), samples=64)
    w = problem.weights()
    raw = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(w)]
    d = surface.filter_normalize(raw, w)
    names = [n for n, p in problem.model.named_parameters()]
    for name, di, ri, wi in zip(names, d, raw, w):
        if wi.dim() <= 1:  # biases and the BatchNorm scale and shift
            assert not di.any(), name
            continue
        for f in range(wi.shape[0]):  # each filter: the weights' filter norm, the random filter's direction
            assert di[f].norm() == pytest.approx(float(wi[f].norm()), rel=1e-5)
            cos = torch.nn.functional.cosine_similarity(di[f].reshape(1, -1), ri[f].reshape(1, -1))
            assert float(cos) == pytest.approx(1.0, abs=1e-6)
    assert any("bn" in n or "1.weight" in n for n in names)  # the model has a BatchNorm to zero
    dirs = surface.random_directions(w, 2, seed=3)
    again = surface.random_directions(w, 2, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(dirs[1], again[1]))


def test_the_grid_is_symmetric_with_the_centre_on_it():
    for n in (3, 11, 51, 101):
        a = surface.axis(0.7, n)
        assert len(a) == n and a[n // 2] == 0.0
        np.testing.assert_array_equal(a, -a[::-1])
        assert a[-1] == pytest.approx(0.7, rel=1e-15)
    with pytest.raises(UserError, match="odd"):
        surface.axis(1.0, 50)
    t = surface.line_axis(20, 0.5)
    assert 0.0 in t and 1.0 in t and t[0] == -0.5 and t[-1] == 1.5


def test_centre_point_is_the_model_loss_and_the_surface_is_a_plane(spiral):
    w = spiral.weights()
    dirs = surface.random_directions(w, 2, seed=1)
    coords = grid(1.0, 11)
    loop = surface.evaluate_loop(spiral, w, dirs, coords).reshape(11, 11)
    assert loop[5, 5] == spiral.loss()  # the loop sets exactly the centre weights: the same number
    s = surface.network_surface(spiral, "random", 1.0, 11, seed=1)
    assert s.loss[5, 5] == pytest.approx(s.center_loss, rel=1e-6) and s.center_loss == spiral.loss()
    np.testing.assert_allclose(s.loss, loop, rtol=1e-5)
    # the plane is symmetric: the loss at −(a, b) is the loss along the reversed directions at (a, b)
    flipped = surface.evaluate_loop(spiral, w, [[-t for t in d] for d in dirs], coords).reshape(11, 11)
    np.testing.assert_allclose(flipped[::-1, ::-1], loop, rtol=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(spiral.weights(), w))  # the weights are put back


@pytest.mark.parametrize(
    "doc,normalized",
    [(CNN, True), (CNN, False), (SEQ, False), (FLAT_FIRST, True)],
    ids=["cnn-filter-normalized", "cnn-every-weight-moves", "lstm", "flatten-first"],
)
def test_batched_surface_equals_the_loop(doc, normalized):
    problem = surface.make_problem(validate(doc), samples=96)
    w = problem.weights()
    if normalized:
        dirs = surface.random_directions(w, 2, seed=0)
    else:  # raw directions move the biases and BatchNorm's scale and shift too: the per-point path
        g = torch.Generator().manual_seed(0)
        dirs = [[0.3 * torch.randn(t.shape, generator=g) for t in w] for _ in range(2)]
    coords = grid(0.8, 7)
    loop = surface.evaluate_loop(problem, w, dirs, coords)
    for budget in (1 << 10, surface_points.FOLD_BUDGET):  # many small chunks and sample blocks, and few large ones
        fast = surface.evaluate_batched(problem, w, dirs, coords, budget=budget)
        np.testing.assert_allclose(fast, loop, rtol=1e-5)


def test_batched_line_equals_the_loop(spiral):
    w = spiral.weights()
    start = [t + 0.5 * torch.randn(t.shape, generator=torch.Generator().manual_seed(5)) for t in w]
    t = surface.line_axis(10, 0.5)
    direction = [a - b for a, b in zip(w, start)]
    loop = surface.evaluate_loop(spiral, start, [direction], t[:, None])
    fast = surface.evaluate_batched(spiral, start, [direction], t[:, None])
    np.testing.assert_allclose(fast, loop, rtol=1e-5)
    assert loop[list(t).index(1.0)] == pytest.approx(spiral.loss(), rel=1e-6)


def test_a_grid_over_the_limit_is_refused_with_the_limit(spiral, monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_GRID_POINTS", "100")
    with pytest.raises(UserError, match=r"121 grid points is over the limit of 100 \(10×10\).*DLVIZ_MAX_GRID_POINTS"):
        surface.network_surface(spiral, "random", 1.0, 11)
    monkeypatch.delenv("DLVIZ_MAX_GRID_POINTS")
    with pytest.raises(UserError, match="10,201"):
        surface.network_surface(spiral, "random", 1.0, 103)


def test_pca_directions_match_an_svd_and_projection_recovers_plane_coordinates():
    rng = np.random.default_rng(0)
    like = [torch.zeros(3, 4), torch.zeros(5)]
    snaps = rng.normal(size=(9, 17)).astype(np.float32) * np.linspace(3, 0.1, 17, dtype=np.float32)
    center = torch.as_tensor(snaps[-1])
    dirs, ratio = surface.pca_directions(snaps, center, like)
    m = snaps.astype(np.float64) - snaps[-1]
    m -= m.mean(axis=0)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    np.testing.assert_allclose(ratio, (s**2 / (s**2).sum())[:2], rtol=1e-6)
    for d, v in zip(dirs, vt[:2]):
        flat = surface.flatten(d).double().numpy()
        assert abs(abs(flat @ v) - 1) < 1e-5 and abs(np.linalg.norm(flat) - 1) < 1e-6
    # random directions are not orthogonal: the least-squares projection still finds the coordinates
    g = torch.Generator().manual_seed(1)
    d2 = [[torch.randn(t.shape, generator=g) for t in like] for _ in range(2)]
    pts = np.stack([(center + a * surface.flatten(d2[0]) + b * surface.flatten(d2[1])).numpy() for a, b in [(0.5, -1.0), (2.0, 0.25)]])
    np.testing.assert_allclose(surface.project(pts, center, d2), [[0.5, -1.0], [2.0, 0.25]], atol=1e-5)
    with pytest.raises(UserError, match="at least 3"):
        surface.pca_directions(snaps[:2], center, like)


def test_a_trained_run_from_the_store_gives_all_three_surfaces_with_its_path(tmp_path):
    exp = validate({**gallery.raw("spiral-tanh"), "training": {"epochs": 4}})
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run(exp)
    trainer = Trainer(exp, [StoreCallback(store, run_id)])
    trainer.run()
    steps, snaps = store.trajectory(run_id)
    final = int(store.checkpoints(run_id)["step"].max())
    problem = surface.make_problem(store.experiment(run_id), store.load_checkpoint(run_id, final)["model"], samples=200)
    assert problem.loss() == pytest.approx(surface.make_problem(exp, trainer.model.state_dict(), samples=200).loss())
    # the trainer's flat snapshots follow model.parameters(): the last one unflattens to the trained weights
    last = surface.unflatten(snaps[-1], problem.weights())
    if steps[-1] == final:
        assert all(torch.equal(a, b) for a, b in zip(last, problem.weights()))
    at_start = surface.make_problem(exp, store.load_checkpoint(run_id, 0)["model"], samples=200)
    initial = at_start.weights()
    pca = surface.network_surface(problem, "pca", 1.25, 11, steps=steps, snapshots=snaps, center_step=final)
    assert pca.path[-1].tolist() == [0.0, 0.0] and pca.path_steps[-1] == final and pca.path_steps[0] == 0
    assert pca.path_loss[-1] == pytest.approx(pca.center_loss, rel=1e-6)
    assert np.abs(pca.path).max() == pytest.approx(pca.a[-1] / 1.25, rel=1e-6)  # the range follows the path
    assert pca.explained.sum() <= 1 and pca.explained[0] >= pca.explained[1] > 0
    assert pca.loss[0].min() > pca.center_loss or pca.loss.min() < pca.center_loss  # a real surface, not a constant
    assert "% of the path's variance" in pca.axis_titles[0]
    line = surface.network_surface(problem, "line", 0.5, 10, initial=initial)
    assert line.b is None and line.loss[list(line.a).index(1.0)] == pytest.approx(line.center_loss, rel=1e-6)
    assert line.loss[list(line.a).index(0.0)] == pytest.approx(at_start.loss(), rel=1e-5)
    assert line.loss[list(line.a).index(0.0)] > line.center_loss + 0.1  # training lowered the loss
    rnd = surface.network_surface(problem, "random", 1.0, 11, steps=steps, snapshots=snaps, center_step=final)
    assert rnd.path.shape[1] == 2 and len(rnd.path_loss) == len(rnd.path)
    for s in (pca, rnd):
        assert len(lf.surface_contour(s).data) == 4 and len(lf.surface_3d(s).data) == 3
    assert len(lf.surface_line(line).data) == 3
    store.close()


def test_untrained_weights_give_a_plane_and_no_path():
    problem = surface.make_problem(gallery.load("xor"), samples=100)
    s = surface.network_surface(problem, "random", 0.5, 5)
    assert s.path is None and s.loss.shape == (5, 5)
    assert len(lf.surface_contour(s).data) == 2
    with pytest.raises(UserError, match="train first"):
        surface.network_surface(problem, "pca", 1.0, 5)


@pytest.mark.parametrize("kernel", [1, 2, 3, (2, 3)])
def test_the_batched_methods_faster_forms_equal_the_layers(kernel):
    x = torch.randn(3, 4, 11, 13, generator=torch.Generator().manual_seed(0))
    pool = torch.nn.AvgPool2d(kernel)
    assert surface_points._plain_pool(pool)
    before = x.clone()
    torch.testing.assert_close(surface_points._apply(pool, x), pool(x), rtol=1e-6, atol=1e-6)
    assert torch.equal(x, before)  # the input is left alone
    assert not surface_points._plain_pool(torch.nn.AvgPool2d(3, stride=1)) and not surface_points._plain_pool(torch.nn.AvgPool2d(2, padding=1))
    z = torch.linspace(-30, 30, 10001)
    torch.testing.assert_close(surface_points._apply(torch.nn.Tanh(), z), torch.tanh(z), rtol=0, atol=3e-7)


def test_tanh_then_linear_folded_into_one_product_equals_the_loop():
    doc = {
        **FLAT_FIRST,
        "model": {
            "input_shape": [1, 8, 8],
            "layers": [
                {"type": "Flatten"},
                {"type": "Linear", "out_features": 12},
                {"type": "Tanh"},
                {"type": "Linear", "out_features": 12, "bias": False},
                {"type": "Tanh"},
                {"type": "Linear", "out_features": 10},
            ],
        },
    }
    problem = surface.make_problem(validate(doc), samples=64)
    w = problem.weights()
    g = torch.Generator().manual_seed(2)
    # only the first layer moves: the later Linears keep their weights at every point
    dirs = [[torch.randn(t.shape, generator=g) if i < 2 else torch.zeros_like(t) for i, t in enumerate(w)] for _ in range(2)]
    coords = grid(0.5, 5)
    np.testing.assert_allclose(surface.evaluate_batched(problem, w, dirs, coords), surface.evaluate_loop(problem, w, dirs, coords), rtol=1e-5)
    dirs = surface.random_directions(w, 2, seed=4)
    np.testing.assert_allclose(surface.evaluate_batched(problem, w, dirs, coords), surface.evaluate_loop(problem, w, dirs, coords), rtol=1e-5)
