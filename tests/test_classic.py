"""Classic networks against published figures: parameter counts, receptive fields, FLOPs, and a weightless VGG-16 summary."""

from __future__ import annotations

import gc
import time
import tracemalloc

import pytest
import torch
from conftest import rss_bytes

from dlviz.model.build import summarize
from dlviz.preset import gallery
from dlviz.preset.schema import validate

# The LeNet-5 preset exactly as DESIGN.md prints it.
LENET = {
    "format": "dlviz-preset/1",
    "name": "LeNet-5 on MNIST",
    "seed": 0,
    "data": {"name": "mnist", "val_fraction": 0.2, "batch_size": 64},
    "model": {
        "input_shape": [1, 28, 28],
        "init": "xavier_uniform",
        "layers": [
            {"type": "Conv2d", "out_channels": 6, "kernel_size": 5, "padding": 2},
            {"type": "Tanh"},
            {"type": "AvgPool2d", "kernel_size": 2},
            {"type": "Conv2d", "out_channels": 16, "kernel_size": 5},
            {"type": "Tanh"},
            {"type": "AvgPool2d", "kernel_size": 2},
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 120},
            {"type": "Tanh"},
            {"type": "Linear", "out_features": 84},
            {"type": "Tanh"},
            {"type": "Linear", "out_features": 10},
        ],
    },
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9},
    "training": {"epochs": 5},
}

# torchvision's model documentation: parameters and GFLOPS (multiply-adds, in billions)
PUBLISHED = {"alexnet": (61_100_840, 0.71), "vgg16": (138_357_544, 15.47), "resnet18": (11_689_512, 1.81)}


def test_lenet_parameters_by_hand():
    conv1 = (5 * 5 * 1 + 1) * 6
    conv2 = (5 * 5 * 6 + 1) * 16
    fc = (16 * 5 * 5 + 1) * 120 + (120 + 1) * 84 + (84 + 1) * 10
    s = summarize(validate(LENET))
    assert conv1 + conv2 + fc == 61_706
    assert s.total_params == s.trainable_params == 61_706
    convs = [r for r in s.rows if r.type == "Conv2d"]
    assert [r.trainable_params for r in convs] == [conv1, conv2]
    assert s.output_shape == [10]


def test_lenet_flops_by_hand():
    """conv: 2·k·k·C_in·C_out·H_out·W_out; linear: 2·in·out (a multiply-add counts 2; biases and pools are not counted)."""
    s = summarize(validate(LENET))
    expected = {
        "model.layers[0]": 2 * 5 * 5 * 1 * 6 * 28 * 28,
        "model.layers[3]": 2 * 5 * 5 * 6 * 16 * 10 * 10,
        "model.layers[7]": 2 * 400 * 120,
        "model.layers[9]": 2 * 120 * 84,
        "model.layers[11]": 2 * 84 * 10,
    }
    rows = {r.path: r for r in s.rows}
    for path, flops in expected.items():
        assert rows[path].flops == flops, path
    assert all(r.flops == 0 for p, r in rows.items() if p not in expected)
    assert s.flops == sum(expected.values()) == 833_040


def test_lenet_receptive_field_by_hand():
    # conv 5 pad 2 -> pool 2 -> conv 5 -> pool 2:  r = 1 + 4 + 1·1 + 4·2 + 1·2 = 16, stride 1·2·2 = 4, padding 2
    s = summarize(validate(LENET))
    assert s.receptive_field == {"size": 16, "stride": 4, "padding": 2}


def test_the_lenet_preset_is_the_design_example():
    assert gallery.load("lenet5-mnist").model == validate(LENET).model


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts_and_flops(name):
    params, gflops = PUBLISHED[name]
    s = summarize(gallery.load(name))
    assert s.total_params == params
    assert s.trainable_params == params
    assert round(s.flops / 2 / 1e9, 2) == gflops
    assert s.output_shape == [1000]


# Distill, "Computing Receptive Fields of Convolutional Neural Networks" (Araujo et al., 2019), table of receptive
# fields at the last convolutional map: (size, stride, padding or None where the table's variant differs).
DISTILL = {"alexnet": (195, 32, None), "vgg16": (212, 32, 90), "resnet18": (435, 32, None)}


@pytest.mark.parametrize("name", sorted(DISTILL))
def test_receptive_fields_from_the_distill_table(name):
    size, stride, padding = DISTILL[name]
    rf = summarize(gallery.load(name)).receptive_field
    assert (rf["size"], rf["stride"]) == (size, stride)
    if padding is not None:
        assert rf["padding"] == padding


def test_vgg16_summary_allocates_no_weights():
    exp = gallery.load("vgg16")
    summarize(validate(LENET))  # imports and one-time set-up happen outside the measurement
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    s = summarize(exp)
    seconds = time.perf_counter() - start
    grown = rss_bytes() - before
    tracemalloc.start()
    summarize(exp)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"\nVGG-16 summary: {seconds:.3f} s, RSS growth {grown / 2**20:.1f} MiB, "
        f"Python peak {peak / 2**20:.1f} MiB (the weights would take {138_357_544 * 4 / 2**20:.0f} MiB)"
    )
    assert s.total_params == 138_357_544
    assert grown < 100 * 2**20
    assert peak < 100 * 2**20
    assert seconds < 10
    # the instrument itself: a real 120 MB tensor does show up in the RSS
    before = rss_bytes()
    weights = torch.ones(30_000_000)
    assert rss_bytes() - before > 100 * 2**20
    del weights
