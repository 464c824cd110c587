"""The Landscape page draws a coarse loss surface first and then the full one in the same place: the coarse grid must be
a sub-grid of the fine one, with the same losses there, so that refining never moves what was already drawn."""

import numpy as np
import pytest

from dlviz.analysis import surface
from dlviz.preset import gallery


@pytest.mark.parametrize("fine", [31, 21])
def test_the_coarse_surface_is_the_fine_one_at_their_shared_points(fine):
    problem = surface.make_problem(gallery.load("spiral-tanh"), samples=200)
    coarse = surface.network_surface(problem, "random", 1.0, surface.COARSE, seed=3)
    full = surface.network_surface(problem, "random", 1.0, fine, seed=3)
    step = (fine - 1) // (surface.COARSE - 1)  # 11 points per side are every 3rd of 31, every 2nd of 21
    assert np.allclose(full.a[::step], coarse.a) and np.allclose(full.b[::step], coarse.b)
    assert np.allclose(np.asarray(full.loss)[::step, ::step], np.asarray(coarse.loss), rtol=1e-5, atol=1e-7)
    assert full.center_loss == pytest.approx(coarse.center_loss)
