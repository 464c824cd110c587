"""The Landscape page draws a coarse loss surface first and then the full one in the same place: the coarse grid must be
a sub-grid of the fine one, with the same losses there, so that refining never moves what was already drawn."""

import numpy as np
import pytest

from dlviz.analysis import surface
from dlviz.figures import landscape as lf
from dlviz.preset import gallery


@pytest.mark.parametrize("fine", [11, 21, 31, 51, 101])
def test_the_coarse_surface_is_the_fine_one_at_their_shared_points(fine):
    problem = surface.make_problem(gallery.load("spiral-tanh"), samples=200)
    first = lf.first_grid(fine)
    assert first % 2 == 1 and 3 <= first <= lf.FIRST_GRID
    coarse = surface.network_surface(problem, "random", 1.0, first, seed=3)
    full = surface.network_surface(problem, "random", 1.0, fine, seed=3)
    step, rest = divmod(fine - 1, first - 1)  # 7 points per side are every 5th of 31
    assert rest == 0
    assert np.allclose(full.a[::step], coarse.a) and np.allclose(full.b[::step], coarse.b)
    assert np.allclose(np.asarray(full.loss)[::step, ::step], np.asarray(coarse.loss), rtol=1e-5, atol=1e-7)
    assert full.center_loss == pytest.approx(coarse.center_loss)


def test_a_grid_with_no_coarser_one_inside_it_has_no_first_picture():
    assert lf.first_grid(10) == 10 and lf.first_grid(3) == 3 and lf.first_grid(5) == 3
