"""The coins segmentation set: its mask against the photo's 24 coins and against scikit-image's own watershed
segmentation of the photo, seeded crops from disjoint strips, the whole photo through a fully convolutional net (padded
where needed), and one sentence for options the photo cannot serve."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from dlviz.analysis.segmentation import mean_iou, segment, whole_photo
from dlviz.data import coins
from dlviz.data.datasets import describe, load_dataset
from dlviz.errors import UserError
from dlviz.loop import crop_strips, photo_crops
from dlviz.preset.schema import DataSpec, validate


def spec(**kw):
    return DataSpec.model_validate({"name": "coins", "num_samples": 50, **kw})


def test_the_photo_loads_without_a_download_and_its_mask_finds_the_24_coins():
    pixels, mask = coins.photo()
    assert pixels.shape == mask.shape == (303, 384) and pixels.dtype == np.float32 and 0 <= pixels.min() and pixels.max() <= 1
    assert set(np.unique(mask)) == {0, 1}
    labels, found = ndimage.label(mask)
    assert found == 24  # 4 rows of 6 coins, counted on the photo
    sizes = np.bincount(labels.ravel())[1:]
    # the coins measure 36 to 64 px across by eye: discs of π·18² ≈ 1,018 to π·32² ≈ 3,217 px
    assert sizes.min() > 1000 and sizes.max() < 3300
    # by hand: the centre of the top-left coin (row 52, column 45) and of the large one at the top right (40, 333) are
    # coin; the corners and the gap between the first two rows (row 95) are background
    assert mask[52, 45] == mask[40, 333] == 1
    assert mask[0, 0] == mask[302, 0] == mask[0, 383] == mask[302, 383] == 0 and not mask[95, 10:370].any()
    assert 0.30 < mask.mean() < 0.36  # 24 discs of ~1,650 px on average cover about a third of 116,352 px


def test_the_mask_agrees_with_scikit_image_s_own_watershed_of_the_coins():
    """Scikit-image's coins tutorial segments the photo otherwise: a watershed of its Sobel edges from markers where it
    is darker than 30 (background) or brighter than 150 (coin), holes filled."""
    from skimage import data, filters, segmentation

    photo = data.coins()
    markers = np.zeros_like(photo)
    markers[photo < 30], markers[photo > 150] = 1, 2
    reference = ndimage.binary_fill_holes(segmentation.watershed(filters.sobel(photo), markers) == 2)
    _, mask = coins.photo()
    assert mean_iou(torch.from_numpy(mask.copy()), torch.from_numpy(reference.astype(np.int64)), 2) > 0.9
    assert (mask == reference).mean() > 0.95


def test_crops_are_seeded_and_cut_from_the_photo_where_their_strip_allows():
    a, b, c = (load_dataset(spec(), s) for s in (0, 0, 1))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val) and not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (40, 1, 48, 48) and a.y_val.shape == (10, 48, 48) and a.y_train.dtype == torch.int64
    assert a.x_test is None and describe(spec(crop=32)) == ((1, 32, 32), "classification", 2, (32, 32))
    pixels, mask = coins.photo()
    left = crop_strips(384, [40, 10, 0])
    assert left == [(0, 307), (307, 384), (384, 384)]
    # every crop is a window of the photo inside its part's strip: found among the places whose pixel matches its corner
    for x, y, (lo, hi) in ((a.x_train, a.y_train, left[0]), (a.x_val, a.y_val, left[1])):
        raw = a.pixels(x)[:, 0].numpy()
        for k in range(len(x)):
            hits = [
                (r, q)
                for r, q in zip(*np.nonzero(np.abs(pixels[: 303 - 47, : 384 - 47] - raw[k, 0, 0]) < 1e-5))
                if lo <= q <= hi - 48
                and np.allclose(pixels[r : r + 48, q : q + 48], raw[k], atol=1e-5)
                and np.array_equal(mask[r : r + 48, q : q + 48], y[k].numpy())
            ]
            assert hits, k


def test_no_two_parts_share_a_pixel():
    rng = np.random.default_rng(3)
    photo = np.arange(303 * 384, dtype=np.float32).reshape(303, 384)  # each pixel names its own place
    counts = [200, 50, 30]
    xs, _ = photo_crops(photo, np.zeros((303, 384), np.int64), counts, 32, rng)
    columns = [set((xs[k].numpy().astype(np.int64) % 384).ravel().tolist()) for k in range(3)]
    assert [len(x) for x in xs] == counts
    assert not columns[0] & columns[1] and not columns[1] & columns[2] and not columns[0] & columns[2]
    assert max(columns[0]) < min(columns[1]) and max(columns[1]) < min(columns[2])  # left to right: train, validation, test


def test_the_normalization_and_the_note():
    ds = load_dataset(spec(val_fraction=0.2, test_fraction=0.2, crop=32), 0)
    pixels, _ = coins.photo()
    mean, std = ds.normalization
    assert (mean, std) == pytest.approx((float(pixels.mean()), float(pixels.std())), abs=1e-4)  # the photo's own statistics
    assert len(ds.x_test) == 10 and "validation from columns 230 to 306" in ds.note and "test from columns 307 to 383" in ds.note
    assert "24 coins" in ds.note and "Otsu" in ds.note


class Bright(nn.Module):
    """Coin where the normalized pixel is brighter than the photo's mean; pools by 4 and upsamples back."""

    def forward(self, x):
        x = nn.functional.interpolate(nn.functional.avg_pool2d(x, 4), scale_factor=4)
        return torch.cat([-x, x], 1)


def test_the_whole_photo_is_padded_to_the_model_s_stride_and_cut_back():
    pixels, mask = coins.photo()
    whole = whole_photo(Bright())
    assert whole.padded == (304, 384) and whole.pred.shape == whole.true.shape == whole.loss_map.shape == (303, 384)
    np.testing.assert_array_equal(whole.true, mask)
    assert np.allclose(whole.pixels, pixels, atol=1e-6)
    # by hand: the reflection-padded photo, pooled and upsampled, cut back to 303 rows
    x = torch.from_numpy(coins.normalized(pixels))[None, None]
    padded = torch.cat([x, x[..., -2:-1, :]], 2)
    want = (nn.functional.interpolate(nn.functional.avg_pool2d(padded, 4), scale_factor=4)[0, 0, :303] > 0).numpy()
    np.testing.assert_array_equal(whole.pred, want)
    assert whole.mean_iou > 0.5
    # a model that takes any size is not padded; one that cannot run at all says so in one sentence
    assert whole_photo(nn.Conv2d(1, 2, 3, padding=1)).padded is None
    with pytest.raises(UserError, match="cannot run on a 303×384 canvas"):
        segment(nn.Linear(5, 2), torch.zeros(1, 303, 384), torch.zeros(303, 384, dtype=torch.long), (0.0, 1.0), 2, pad=True)


def test_options_out_of_range_or_strips_narrower_than_a_crop_are_one_sentence():
    def error(data):
        with pytest.raises(UserError) as e:
            doc = {"format": "dlviz-preset/1", "data": {"name": "coins", **data}, "model": {"input_shape": [1, 48, 48]}}
            load_dataset(validate(doc).data, 0)
        assert "\n" not in str(e.value)
        return e.value

    assert error({"crop": 40}).path == "data.crop"
    assert error({"num_samples": 5}).path == "data.num_samples"
    assert error({"masks": "strokes"}).path == "data.masks"  # mnist-masks' option
    e = error({"crop": 64, "val_fraction": 0.1})
    assert e.path == "data.val_fraction" and "38 columns wide, narrower than a 64-pixel crop" in str(e)
    e = error({"crop": 64, "val_fraction": 0.45, "test_fraction": 0.4})
    assert e.path == "data.val_fraction" and "training strip" in str(e)
    e = error({"num_samples": 50_000, "crop": 64})
    assert e.path == "data.num_samples" and "50,000 crops of 64×64 are" in str(e)
