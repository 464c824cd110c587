"""Feature maps against direct forward passes, hooks that leave nothing behind, checkpoint weights, filters, and
images from files, samples, the dataset and noise fitted to a model's input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import preset
from PIL import Image

from dlviz.analysis import features
from dlviz.data.datasets import MNIST_MEAN, MNIST_STD, load_dataset
from dlviz.errors import UserError
from dlviz.model.build import build_model
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

DIGITS_CNN = {
    "format": "dlviz-preset/1",
    "name": "CNN on digits",
    "seed": 0,
    "data": {"name": "digits", "val_fraction": 0.2, "batch_size": 32},
    "model": {
        "input_shape": [1, 8, 8],
        "layers": [
            {"type": "Conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
            {"type": "ReLU"},
            {"type": "Conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"type": "ReLU"},
            {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 10},
        ],
    },
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.01},
    "training": {"epochs": 1},
}

BLOCKS = preset(
    [
        {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "Residual", "body": [{"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "ReLU"}]},
        {
            "type": "Concat",
            "branches": [[{"type": "Conv2d", "out_channels": 2, "kernel_size": 1}], [{"type": "MaxPool2d", "kernel_size": 3, "stride": 1, "padding": 1}]],
        },
        {"type": "Identity"},
        {"type": "Flatten"},
        {"type": "Linear", "out_features": 3},
    ],
    [3, 10, 10],
)


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _hooks(net) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


# ---------------------------------------------------------------- feature maps


def test_lenet_maps_equal_a_direct_forward_pass_layer_by_layer():
    exp = gallery.load("lenet5-mnist")
    net = features.load_model(exp)
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    outs = features.feature_maps(net, x)
    assert [o.path for o in outs] == [f"model.layers[{i}]" for i in range(12)]
    assert [o.type for o in outs] == [layer.type for layer in exp.model.layers]
    assert [o.values.shape for o in outs] == [
        (6, 28, 28),
        (6, 28, 28),
        (6, 14, 14),
        (16, 10, 10),
        (16, 10, 10),
        (16, 5, 5),
        (400,),
        (120,),
        (120,),
        (84,),
        (84,),
        (10,),
    ]
    assert [o.kind for o in outs] == ["maps"] * 6 + ["vector"] * 6
    h = x
    with torch.no_grad():
        for o, layer in zip(outs, net.layers):
            h = layer(h)
            np.testing.assert_array_equal(o.values, h[0].numpy())
        np.testing.assert_array_equal(outs[-1].values, net(x)[0].numpy())


def test_block_outputs_come_after_their_children_and_equal_the_blocks_by_hand():
    net = features.load_model(validate(BLOCKS))
    x = torch.randn(1, 3, 10, 10)
    outs = {o.path: o for o in features.feature_maps(net, x)}
    order = list(outs)
    assert order.index("model.layers[1].body[1]") < order.index("model.layers[1]")
    assert order.index("model.layers[2].branches[1][0]") < order.index("model.layers[2]")
    with torch.no_grad():
        a = net.layers[0](x)
        res = net.layers[1].body(a) + a
        cat = torch.cat([net.layers[2].branches[0](res), torch.nn.functional.max_pool2d(res, 3, 1, 1)], dim=1)
    np.testing.assert_allclose(outs["model.layers[1]"].values, res[0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(outs["model.layers[2]"].values, cat[0].numpy(), rtol=0, atol=1e-6)
    assert outs["model.layers[1]"].type == "Residual" and outs["model.layers[2]"].type == "Concat"
    assert outs["model.layers[5]"].values.shape == (3,)


def test_hooks_are_removed_and_nothing_leaks_between_calls():
    net = features.load_model(validate(BLOCKS))
    assert _hooks(net) == 0
    x1, x2 = torch.randn(1, 3, 10, 10), torch.randn(1, 3, 10, 10)
    first = features.feature_maps(net, x1)
    assert _hooks(net) == 0
    kept = [o.values.copy() for o in first]
    second = features.feature_maps(net, x2)
    assert _hooks(net) == 0
    # the first call's arrays are copies: the second pass (and an Identity layer sharing its input) changed nothing
    for o, k in zip(first, kept):
        np.testing.assert_array_equal(o.values, k)
    assert not np.allclose(first[0].values, second[0].values)
    # a plain forward pass afterwards records nothing anywhere
    with torch.no_grad():
        net(x1)
    assert _hooks(net) == 0
    # hooks go even when the pass fails
    with pytest.raises(RuntimeError):
        features.feature_maps(net, torch.randn(1, 5, 10, 10))
    assert _hooks(net) == 0
    assert not any(p.requires_grad for p in net.parameters())


def test_checkpoint_weights_from_a_run_store(tmp_path):
    exp = validate(DIGITS_CNN)
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run(exp, session="s")
    Trainer(exp, callbacks=[StoreCallback(store, run_id)]).run()
    ckpts = store.checkpoints(run_id)
    assert ckpts["label"].iloc[0] == "initial" and ckpts["label"].iloc[-1] == "final"
    initial = features.load_model(exp, store.load_checkpoint(run_id, 0))
    final_state = store.load_checkpoint(run_id)
    trained = features.load_model(exp, final_state)
    untrained = features.load_model(exp)
    x = torch.randn(1, 1, 8, 8)
    # the initial checkpoint is the preset's untrained model (same seed), the final one differs
    for a, b in zip(features.feature_maps(initial, x), features.feature_maps(untrained, x)):
        np.testing.assert_array_equal(a.values, b.values)
    ref = build_model(exp)
    ref.load_state_dict(final_state["model"])
    ref.eval()
    with torch.no_grad():
        want = ref(x)[0].numpy()
    got = features.feature_maps(trained, x)
    np.testing.assert_allclose(got[-1].values, want, rtol=0, atol=1e-6)
    assert not np.allclose(got[0].values, features.feature_maps(untrained, x)[0].values)
    before = features.conv_filters(initial)
    after = features.conv_filters(trained)
    assert [f.weight.shape for f in after] == [(8, 1, 3, 3), (16, 8, 3, 3)]
    assert not np.allclose(before[0].weight, after[0].weight)
    store.close()


def test_a_checkpoint_of_another_model_is_refused():
    exp = validate(DIGITS_CNN)
    other = build_model(gallery.load("lenet5-mnist")).state_dict()
    with pytest.raises(UserError, match="do not fit"):
        features.load_model(exp, {"model": other})


def test_colour_ranges_are_symmetric_and_nested():
    net = features.load_model(gallery.load("lenet5-mnist"))
    outs = features.feature_maps(net, torch.randn(1, 1, 28, 28))
    for i in (0, 3):
        for c in (0, 2):
            lo_m, hi_m = features.color_range(outs, i, c, "per map")
            lo_l, hi_l = features.color_range(outs, i, c, "per layer")
            lo_g, hi_g = features.color_range(outs, i, c, "global")
            assert lo_m == -hi_m and lo_l == -hi_l and lo_g == -hi_g
            assert hi_m == pytest.approx(np.abs(outs[i].values[c]).max())
            assert hi_l == pytest.approx(np.abs(outs[i].values).max())
            assert hi_m <= hi_l <= hi_g
    assert features.color_range(outs, 0, 0, "global") == features.color_range(outs, 4, 7, "global")


def test_filters_and_colour_filters():
    exp = validate(preset([{"type": "Conv2d", "out_channels": 4, "kernel_size": 5}, {"type": "Conv2d", "out_channels": 2, "kernel_size": 3}], [3, 16, 16]))
    fs = features.conv_filters(features.load_model(exp))
    assert [f.path for f in fs] == ["model.layers[0]", "model.layers[1]"]
    assert fs[0].rgb and not fs[1].rgb
    w = np.zeros((2, 3, 2, 2), dtype=np.float32)
    w[0, 0, 0, 0], w[0, 2, 1, 1] = 2.0, -1.0
    img = features.rgb_filters(w)
    assert img.shape == (2, 2, 2, 3)
    assert img[0, 0, 0, 0] == 1.0 and img[0, 1, 1, 2] == 0.25 and img[0, 0, 1, 1] == 0.5
    np.testing.assert_array_equal(img[1], 0.5)  # an all-zero kernel is plain grey


# ---------------------------------------------------------------- inputs


def test_colour_upload_to_a_grey_model_uses_luminance():
    red = np.zeros((20, 20, 3), dtype=np.uint8)
    red[..., 0] = 255
    pic = features.decode_image(_png(red))
    assert not pic.grey
    inp = features.image_input(pic, [1, 10, 10])
    assert inp.x.shape == (1, 1, 10, 10)
    np.testing.assert_allclose(inp.x.numpy(), 0.299, atol=1e-6)
    assert "colour converted to greyscale" in inp.note and "resized to 10×10" in inp.note


def test_grey_upload_to_a_colour_model_is_copied_into_three_channels():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    pic = features.decode_image(_png(grey))
    assert pic.grey
    inp = features.image_input(pic, [3, 8, 8])
    assert inp.x.shape == (1, 3, 8, 8)
    for c in range(3):
        np.testing.assert_allclose(inp.x[0, c].numpy(), grey / 255.0, atol=1e-6)
    assert "greyscale copied into the 3 colour channels" in inp.note
    assert "resized" not in inp.note  # already the input's size


def test_rgb_with_equal_channels_counts_as_grey_and_alpha_is_shown_on_white():
    rgb = np.full((6, 6, 3), 100, dtype=np.uint8)
    assert features.decode_image(_png(rgb)).grey
    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent black
    pic = features.decode_image(_png(rgba))
    np.testing.assert_allclose(pic.pixels, 1.0)
    assert "white" in pic.note


def test_sixteen_bit_images_are_scaled_from_their_range():
    a = np.array([[1000, 3000], [2000, 5000]], dtype=np.uint16)
    pic = features.decode_image(_png(a))
    np.testing.assert_allclose(pic.pixels, [[0, 0.5], [0.25, 1]], atol=1e-6)
    assert "scaled" in pic.note


def test_non_square_images_are_centre_cropped():
    a = np.zeros((20, 40), dtype=np.uint8)
    a[:, :10] = 255  # the left quarter is white and falls outside the centre square
    a[:, 30:] = 255
    inp = features.image_input(features.decode_image(_png(a)), [1, 10, 10])
    np.testing.assert_allclose(inp.x.numpy(), 0.0)
    assert "40×20 image centre-cropped and resized to 10×10" in inp.note


def test_images_are_normalized_like_the_training_data():
    white = np.full((28, 28), 255, dtype=np.uint8)
    inp = features.image_input(features.decode_image(_png(white)), [1, 28, 28], (MNIST_MEAN, MNIST_STD), "mnist")
    np.testing.assert_allclose(inp.x.numpy(), (1 - MNIST_MEAN) / MNIST_STD, rtol=1e-6)
    assert "normalized like the mnist images" in inp.note
    np.testing.assert_allclose(inp.pixels, 1.0)  # what is shown stays in pixel units


@pytest.mark.parametrize(
    "data, match",
    [
        (b"certainly not an image", "not an image that can be read"),
        (b"", "not an image that can be read"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image that can be read"),
    ],
)
def test_files_that_are_not_images(data, match):
    with pytest.raises(UserError, match=match) as e:
        features.decode_image(data, "notes.txt")
    assert "\n" not in str(e.value) and str(e.value).count(". ") == 0


def test_truncated_image():
    data = _png((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    with pytest.raises(UserError, match="damaged or truncated"):
        features.decode_image(data[: len(data) // 2])


def test_huge_files_and_huge_images(monkeypatch):
    data = _png(np.zeros((30, 30), dtype=np.uint8))
    monkeypatch.setenv("DLVIZ_MAX_UPLOAD_BYTES", str(len(data) - 1))
    with pytest.raises(UserError, match="over the upload limit"):
        features.decode_image(data)
    monkeypatch.delenv("DLVIZ_MAX_UPLOAD_BYTES")
    monkeypatch.setenv("DLVIZ_MAX_IMAGE_PIXELS", "899")
    with pytest.raises(UserError, match="30×30 = 900 pixels, over the limit of 899"):
        features.decode_image(data)
    monkeypatch.setenv("DLVIZ_MAX_IMAGE_PIXELS", "900")
    assert features.decode_image(data).pixels.shape == (30, 30)


def test_an_image_needs_an_image_shaped_model():
    with pytest.raises(UserError, match="needs a model input of \\[channels, height, width\\]") as e:
        features.image_input(features.sample_image("camera (scikit-image)"), [2])
    assert e.value.path == "model.input_shape"


@pytest.mark.parametrize("name", list(features.SAMPLE_IMAGES))
def test_every_sample_image_fits_grey_and_colour_models(name):
    pic = features.sample_image(name)
    assert pic.pixels.min() >= 0 and pic.pixels.max() <= 1 and pic.pixels.max() > pic.pixels.min()
    for shape in ([1, 28, 28], [3, 32, 24], [2, 8, 8]):
        inp = features.image_input(pic, shape)
        assert tuple(inp.x.shape) == (1, *shape)
        assert torch.isfinite(inp.x).all()


def test_dataset_samples_and_noise():
    exp = validate(DIGITS_CNN)
    ds = load_dataset(exp.data, exp.seed)
    inp = features.dataset_input(exp, ds, 5)
    assert torch.equal(inp.x, ds.x_val[5:6])
    assert inp.label == str(int(ds.y_val[5]))
    np.testing.assert_allclose(inp.pixels, ds.pixels(ds.x_val[5])[0].numpy(), atol=1e-6)
    n = len(ds.x_val)
    with pytest.raises(UserError, match=f"has {n} samples \\(0 to {n - 1}\\)"):
        features.dataset_input(exp, ds, n)
    net = features.load_model(exp)
    a, b = features.noise_input(net, 3), features.noise_input(net, 3)
    assert torch.equal(a.x, b.x) and a.x.shape == (1, 1, 8, 8)
    assert not torch.equal(a.x, features.noise_input(net, 4).x)
    tokens = validate(preset([{"type": "Embedding", "num_embeddings": 7, "embedding_dim": 4}, {"type": "Flatten"}], [5]))
    t = features.noise_input(features.load_model(tokens), 0)
    assert t.x.dtype == torch.long and t.x.shape == (1, 5) and 0 <= int(t.x.min()) and int(t.x.max()) < 7
    outs = features.feature_maps(features.load_model(tokens), t.x)
    assert [o.kind for o in outs] == ["rows", "vector"] and not features.has_maps(outs)
