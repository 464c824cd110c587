"""The Vision page's Segmentation tab: a model's mask of a validation canvas (or crop of the coins photo) against the true
one, with the cross-entropy of every pixel and the IoU of every class, then the same weights on a larger canvas than they
were trained on, or on the whole coins photo."""

from __future__ import annotations

import json
import math

import streamlit as st

from dlviz.analysis import segmentation as seg
from dlviz.analysis.features import load_model
from dlviz.data import coins, masks
from dlviz.data.datasets import option
from dlviz.errors import UserError
from dlviz.figures import segmentation as figs
from dlviz.figures import style
from dlviz.preset.schema import validate
from dlviz_app import runs, shared
from dlviz_app.text import md

LARGEST = 4  # the larger canvas's side goes up to this many times the training canvas's
MOST_DIGITS = 12


@st.cache_resource(max_entries=4, show_spinner=False)
def _model(preset_text: str, run_id: str | None, step: int | None):
    """The model at the weights asked for, on the CPU, in eval mode."""
    exp = validate(json.loads(preset_text))
    state = runs.store().load_checkpoint(run_id, step) if run_id else None
    return load_model(exp, state, device="cpu")


@st.cache_data(max_entries=16, show_spinner=False)
def _validation_iou(preset_text: str, run_id: str | None, step: int | None) -> tuple[float, list[float]]:
    exp = validate(json.loads(preset_text))
    ds = shared.dataset(exp)
    mean, per_class = seg.validation_iou(_model(preset_text, run_id, step), ds.x_val, ds.y_val, ds.num_classes)
    return mean, per_class.tolist()


@st.cache_data(max_entries=4, show_spinner=False)
def _whole_photo(preset_text: str, run_id: str | None, step: int | None) -> seg.Segmented:
    return seg.whole_photo(_model(preset_text, run_id, step))


def _number(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.3f}"


def segmentation_tab() -> None:
    chosen = runs.choose_weights(
        "its masks",
        lambda exp: exp.data is not None and exp.data.name in (masks.NAME, coins.NAME),
        "This preset is not a segmentation model: load the gallery's small U-Net (the strokes of MNIST digits segmented) to see its masks here.",
        "This preset keeps no validation canvases (val_fraction is 0): set one on Train to look at its masks.",
    )
    if chosen is None:
        return
    exp, run_id, step, ds = chosen
    text = json.dumps(exp.to_dict(), sort_keys=True)
    n, names = len(ds.x_val), ds.class_names
    noun, nouns = ("crop", "crops") if exp.data.name == coins.NAME else ("canvas", "canvases")
    try:
        net = _model(text, run_id, step)
    except UserError as err:
        st.error(md(err))
        return
    where = f"run checkpoint at step {step:,}" if run_id else "untrained"
    i = int(st.number_input(f"Validation {noun} (0 to {n - 1:,})", 0, n - 1, 0, key="vision_seg_canvas"))
    one = seg.segment(net, ds.x_val[i], ds.y_val[i], ds.normalization, ds.num_classes)
    side = one.pixels.shape[0]
    st.plotly_chart(
        figs.segmentation_figure(one.pixels, one.true, one.pred, one.loss_map, names, f"{noun.capitalize()} {i}, {side}×{side} ({where})"),
        config=style.CONFIG,
        key="vision_seg_chart",
    )
    mean, per_class = _validation_iou(text, run_id, step)
    a, b, c, d = st.columns(4)
    a.metric(f"Cross-entropy, this {noun}", f"{one.loss:.4f}", help="the mean over its pixels of −log of the true class's softmax probability (nats)")
    b.metric(f"Pixel accuracy, this {noun}", f"{float((one.pred == one.true).mean()):.3f}")
    c.metric(f"Mean IoU, this {noun}", _number(one.mean_iou))
    d.metric("Mean IoU, validation set", _number(mean), help=f"over the {n:,} validation {nouns}, their pixels counted together")
    st.dataframe(
        [
            {"class": names[k], f"IoU on this {noun}": _number(float(one.iou[k])), f"IoU on the {n:,} validation {nouns}": _number(per_class[k])}
            for k in range(len(names))
            if not (math.isnan(one.iou[k]) and math.isnan(per_class[k]))
        ],
        hide_index=True,
        key="vision_seg_iou",
    )
    st.caption(
        "IoU of a class: the pixels both masks give it over the pixels either gives it. The mean is over the classes present "
        f"in either mask (— for a class in neither); the validation figures count the pixels of all {nouns} together."
    )
    if exp.data.name == coins.NAME:
        whole_photo(text, run_id, step, names, where)
        return

    st.subheader("A larger canvas")
    st.caption(
        "The same weights on a canvas larger than the ones they were trained on: convolutions, poolings and transposed "
        "convolutions slide over any size, so a fully convolutional net gives a mask of whatever it is given."
    )
    left, right = st.columns(2)
    big_side = left.slider("Canvas side", side, LARGEST * side, 2 * side, 16, key="vision_seg_side")
    digits = right.slider("Digits (at most)", 1, MOST_DIGITS, 6, key="vision_seg_digits")
    try:
        big = seg.larger_canvas(net, big_side, digits, option(exp.data, "masks") == "strokes", exp.seed)
    except UserError as err:
        st.error(md(err))
        return
    st.plotly_chart(
        figs.segmentation_figure(big.pixels, big.true, big.pred, big.loss_map, names, f"A new {big_side}×{big_side} canvas ({where})"),
        config=style.CONFIG,
        key="vision_seg_big_chart",
    )
    st.markdown(f"Cross-entropy **{big.loss:.4f}**, pixel accuracy **{float((big.pred == big.true).mean()):.3f}**, mean IoU **{_number(big.mean_iou)}**.")


def whole_photo(text: str, run_id: str | None, step: int | None, names: list[str], where: str) -> None:
    """The same weights on the whole photo the crops are cut from, padded where its size does not suit the model."""
    st.subheader("The whole photo")
    try:
        photo = _whole_photo(text, run_id, step)
    except UserError as err:
        st.error(md(err))
        return
    h, w = photo.pixels.shape
    padded = (
        f" A {h}×{w} input does not come back whole through its poolings and upsamplings, so the photo is padded at the bottom and right by "
        f"reflection to {photo.padded[0]}×{photo.padded[1]} and the masks are cut back to {h}×{w}."
        if photo.padded
        else ""
    )
    st.caption(
        "The same weights on all of the photo at once: convolutions, poolings and transposed convolutions slide over any size, "
        f"so a fully convolutional net trained on crops gives a mask of the whole {h}×{w} photo, training strip and validation strip alike.{padded}"
    )
    st.plotly_chart(
        figs.segmentation_figure(photo.pixels, photo.true, photo.pred, photo.loss_map, names, f"The whole {h}×{w} photo ({where})"),
        config=style.CONFIG,
        key="vision_seg_photo_chart",
    )
    iou = ", ".join(f"{names[k]} {_number(float(v))}" for k, v in enumerate(photo.iou))
    st.markdown(
        f"Cross-entropy **{photo.loss:.4f}**, pixel accuracy **{float((photo.pred == photo.true).mean()):.3f}**, "
        f"mean IoU **{_number(photo.mean_iou)}** ({iou})."
    )
