"""The Landscape page draws a coarse loss surface first and then the full one in the same place: the coarse grid must be
a sub-grid of the fine one, with the same losses there, so that refining never moves what was already drawn; it is as
fine as the first second allows, and the rest of the grid reports its progress."""

import numpy as np
import pytest

from dlviz.analysis import surface
from dlviz.preset import gallery


@pytest.mark.parametrize("fine", [11, 21, 31, 51, 101])
def test_the_coarse_surface_is_the_fine_one_at_their_shared_points(fine):
    problem = surface.make_problem(gallery.load("spiral-tanh"), samples=200)
    seen, reports = [], []
    full = surface.network_surface(problem, "random", 1.0, fine, seed=3, on_coarse=seen.append, on_progress=lambda *r: reports.append(r))
    (coarse,) = seen
    first = len(coarse.a)
    assert first % 2 == 1 and 3 <= first <= surface.FIRST_GRID and coarse.path is None
    step, rest = divmod(fine - 1, first - 1)  # 7 points per side are every 5th of 31
    assert rest == 0
    assert np.array_equal(full.a[::step], coarse.a) and np.array_equal(full.b[::step], coarse.b)
    assert np.array_equal(np.asarray(full.loss)[::step, ::step], np.asarray(coarse.loss))  # the same numbers, not recomputed
    assert full.center_loss == coarse.center_loss
    # the progress counts up to every point, starting from the coarse grid's
    assert reports[0] == (first * first, fine * fine) and reports[-1] == (fine * fine, fine * fine)
    assert all(a[0] < b[0] for a, b in zip(reports, reports[1:]))
    # and the losses are those of the surface computed in one go
    plain = surface.network_surface(problem, "random", 1.0, fine, seed=3)
    assert np.allclose(full.loss, plain.loss, rtol=1e-5, atol=1e-7)


def test_the_rest_comes_in_parts_of_about_half_a_second_each(monkeypatch):
    problem = surface.make_problem(gallery.load("spiral-tanh"), samples=50)
    calls = []
    real = surface.METHODS["batched"]

    def counted(*args, **kwargs):
        calls.append(len(args[3]))
        return real(*args, **kwargs)

    monkeypatch.setitem(surface.METHODS, "batched", counted)
    monkeypatch.setattr(surface, "PROGRESS_SECONDS", 0.0)  # one point per part, whatever a point costs here
    reports = []
    s = surface.network_surface(problem, "random", 1.0, 5, seed=1, on_progress=lambda *r: reports.append(r))
    assert calls == [1] * 25 and [r[0] for r in reports] == list(range(1, 26))
    assert np.allclose(s.loss, surface.network_surface(problem, "random", 1.0, 5, seed=1).loss, rtol=1e-5, atol=1e-7)


def test_a_model_too_slow_for_even_nine_points_first_shows_them_on_fewer_samples(monkeypatch):
    problem = surface.make_problem(gallery.load("spiral-tanh"), samples=200)
    monkeypatch.setattr(surface, "FIRST_SECONDS", 1e-12)  # whatever a point costs here, 9 of them take longer
    seen, reports = [], []
    full = surface.network_surface(problem, "random", 1.0, 11, seed=2, on_coarse=seen.append, on_progress=lambda *r: reports.append(r))
    (coarse,) = seen
    assert (len(coarse.a), coarse.samples, coarse.samples_asked) == (3, 1, 200)
    one = surface.Problem(problem.model, problem.objective, problem.x[:1], problem.y[:1], problem.flops)
    assert np.allclose(coarse.loss, surface.network_surface(one, "random", 1.0, 11, seed=2).loss[::5, ::5], rtol=1e-5, atol=1e-7)
    # the full grid computes every point on all 200 samples, and its progress starts from none
    assert reports[0][0] < 121 and reports[-1] == (121, 121) and full.samples == 200
    assert np.allclose(full.loss, surface.network_surface(problem, "random", 1.0, 11, seed=2).loss, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "n, point_seconds, side",
    [
        (31, 0.001, 7),  # 49 points in 0.05 s
        (31, 0.015, 3),  # 49 would take 0.74 s, and 5 per side are not on a 31-point grid (30 is no multiple of 4)
        (21, 0.015, 5),  # 25 take 0.38 s (7 per side are not on a 21-point grid)
        (21, 0.05, 3),  # 25 would take 1.25 s
        (31, 2.0, 3),  # even 9 points take longer: the smallest picture, at once
        (21, 0.001, 5),
        (11, 0.001, 3),
        (101, 0.001, 5),
        (5, 0.001, 3),
        (3, 0.001, 3),  # no sub-grid: the grid itself
    ],
)
def test_the_coarse_grid_is_as_fine_as_the_first_half_second_allows(n, point_seconds, side):
    assert surface.coarse_side(n, point_seconds) == side
