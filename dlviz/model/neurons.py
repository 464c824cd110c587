"""Every neuron of a dense network on 2-D points, over the input plane: the Playground's maps, in one forward pass.

The plane is a square grid over [-extent, extent]², row 0 at the top (x2 = +extent), column 0 at the left (x1 =
-extent), as it is drawn. One batched pass of the grid through the network gives each hidden neuron's output (after
its activation) and the output's value, which for classification is mapped to [-1, 1] as Playground's ±1 labels
(2·P(class 1) − 1). A frame is what the board draws: the maps quantized to int8 and base64-encoded, the weights, and
the losses."""

from __future__ import annotations

import base64
import math

import numpy as np
import torch
from torch import nn

from dlviz.model.build import device_of
from dlviz.preset.playground import ONE_D
from dlviz.runtime import featurize

MAP_GRID = 40  # neurons' maps: 40×40, as the issue's benchmark asks and Playground's small squares need
OUTPUT_GRID = 80  # the output's larger map
PLAYGROUND_EXTENT = 6.0  # TensorFlow Playground's plane; sets that spread wider get a plane that holds them


def plane_extent(points: np.ndarray) -> float:
    """The half-width of the drawn plane: Playground's 6, or more for a set that spreads further (blobs), less for one
    that is much smaller (moons), rounded up to a whole number."""
    far = float(np.abs(np.asarray(points)).max()) if len(points) else PLAYGROUND_EXTENT
    if far <= PLAYGROUND_EXTENT and far > PLAYGROUND_EXTENT / 2:
        return PLAYGROUND_EXTENT
    return float(math.ceil(far * 1.1))


def plane_grid(extent: float, n: int) -> np.ndarray:
    """The (n·n, 2) points of the grid, row by row from the top: x1 runs left to right, x2 top to bottom."""
    xs = np.linspace(-extent, extent, n)
    gx, gy = np.meshgrid(xs, xs[::-1])
    return np.column_stack([gx.ravel(), gy.ravel()])


def plane_inputs(points: np.ndarray, features) -> torch.Tensor:
    """The network's inputs at points (N, 2) of the plane: Playground's features of each point, or x1 alone for a
    curve's network (features ("x",)), whose maps are then the same down every column."""
    points = np.asarray(points, dtype=np.float64)
    x = points[:, :1] if tuple(features) == ONE_D else featurize(points, features)
    return torch.as_tensor(x, dtype=torch.float32)


def line(extent: float, n: int) -> np.ndarray:
    """n points evenly spaced along x1 from -extent to extent (x2 = 0): where a curve's prediction is drawn."""
    return np.column_stack([np.linspace(-extent, extent, n), np.zeros(n)])


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.layers if isinstance(m, nn.Linear)]


def unit_outputs(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each hidden layer's output after its activation, and the network's output, for inputs `x`: the network's own
    modules run in order, keeping the value where a hidden layer ends (before the next Linear layer)."""
    hidden, h = [], x
    mods = list(model.layers)
    for i, m in enumerate(mods):
        h = m(h)
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(nxt, nn.Linear):
            hidden.append(h)
    return hidden, h


def output_value(out: torch.Tensor, task: str) -> torch.Tensor:
    """The output drawn on the plane: 2·P(class 1) − 1 for two classes (one logit or two), the value for regression."""
    if task != "classification":
        return out[:, 0]
    if out.shape[-1] == 1:
        return 2 * torch.sigmoid(out[:, 0]) - 1
    return 2 * torch.softmax(out, -1)[:, 1] - 1


@torch.no_grad()
def maps(model: nn.Module, features, extent: float, task: str, n: int = MAP_GRID, out_n: int = OUTPUT_GRID):
    """(hidden maps: per hidden layer an array (units, n, n), output map (out_n, out_n), or for a curve the prediction
    at out_n points along x), in eval mode."""
    was = model.training
    model.eval()
    device = device_of(model)
    try:
        hidden, _ = unit_outputs(model, plane_inputs(plane_grid(extent, n), features).to(device))
        if tuple(features) == ONE_D:  # a curve: the prediction along the line
            out = output_value(model(plane_inputs(line(extent, out_n), features).to(device)), task).cpu().numpy()
        else:
            out = output_value(model(plane_inputs(plane_grid(extent, out_n), features).to(device)), task).reshape(out_n, out_n).cpu().numpy()
    finally:
        model.train(was)
    return [h.T.reshape(-1, n, n).cpu().numpy() for h in hidden], out


def feature_maps(features, extent: float, n: int = MAP_GRID) -> dict[str, np.ndarray]:
    """Each input feature over the plane, scaled into [-1, 1] by its largest magnitude on the plane (as Playground
    draws them)."""
    grid = plane_grid(extent, n)
    out = {}
    for f in features:
        v = plane_inputs(grid, (f,)).numpy()[:, 0].astype(np.float64)
        out[f] = (v / max(float(np.abs(v).max()), 1e-12)).reshape(n, n)
    return out


def encode(a: np.ndarray) -> str:
    """A map as the board takes it: values clipped to [-1, 1], times 127, as int8, row-major, base64."""
    q = np.round(np.clip(np.nan_to_num(np.asarray(a, dtype=np.float64)), -1, 1) * 127).astype(np.int8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def decode(text: str, n: int | None = None) -> np.ndarray:
    """A map `encode` wrote, as floats in [-1, 1], n×n (n: the square root of its length when not given)."""
    v = np.frombuffer(base64.b64decode(text), dtype=np.int8).astype(np.float64) / 127
    n = n or int(round(math.sqrt(v.size)))
    return v.reshape(n, -1)


@torch.no_grad()
def frame(model: nn.Module, features, extent: float, task: str, n: int = MAP_GRID, out_n: int = OUTPUT_GRID) -> dict:
    """The maps and weights of one moment of a network, as the board draws them (the losses and counters are added by
    whoever knows them)."""
    hidden, out = maps(model, features, extent, task, n, out_n)
    lin = linear_layers(model)
    drawn = {"curve": np.nan_to_num(out).tolist()} if tuple(features) == ONE_D else {"output": encode(out)}
    return {
        "n": n,
        "out_n": out_n,
        "hidden": [[encode(u) for u in layer] for layer in hidden],
        **drawn,
        # a diverged network's weights as the largest finite numbers, so that every frame is plain JSON
        "weights": [torch.nan_to_num(m.weight.detach().cpu().double()).tolist() for m in lin],
        "biases": [torch.nan_to_num(m.bias.detach().cpu().double()).tolist() if m.bias is not None else [0.0] * m.out_features for m in lin],
    }


@torch.no_grad()
def hidden_space(model: nn.Module, layer: int, features, extent: float, points: np.ndarray, n: int = 25):
    """Where the plane goes in hidden layer `layer`'s space: (grid lines (2, n, n, 2): the images of the plane's
    horizontal and vertical lines, projected points (len(points), 2), axis names). A layer of 2 neurons is drawn in its
    own coordinates (ConvNetJS's classify2d); a wider one by the 2 principal directions of its activations over the
    plane; a layer of 1 neuron against x1."""
    was = model.training
    model.eval()
    try:
        device = device_of(model)
        xs = np.linspace(-extent, extent, n)
        gx, gy = np.meshgrid(xs, xs)
        lines = np.column_stack([gx.ravel(), gy.ravel()])
        grid_h = unit_outputs(model, plane_inputs(lines, features).to(device))[0][layer].cpu().double()
        pts_h = unit_outputs(model, plane_inputs(points, features).to(device))[0][layer].cpu().double()
    finally:
        model.train(was)
    width = grid_h.shape[1]
    if width == 1:  # one neuron: its value along a line
        g, p, axes = torch.cat([grid_h, torch.zeros_like(grid_h)], 1), torch.cat([pts_h, torch.zeros_like(pts_h)], 1), ("neuron 1", "")
    elif width == 2:
        g, p, axes = grid_h, pts_h, ("neuron 1", "neuron 2")
    else:
        mean = grid_h.mean(0)
        _, _, v = torch.linalg.svd(grid_h - mean, full_matrices=False)
        basis = v[:2].T
        g, p, axes = (grid_h - mean) @ basis, (pts_h - mean) @ basis, ("principal direction 1", "principal direction 2")
    g = g.reshape(n, n, 2).numpy()
    return np.stack([g, g.transpose(1, 0, 2)]), p.numpy(), axes
