"""The Vision page's Verification tab: an embedding trained with a triplet loss, drawn on a plane per checkpoint, then
one-shot verification of the digits it never saw: the distances of same and different pairs, a threshold, and the ROC
curve with its AUC."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from dlviz.analysis import verification as ver
from dlviz.analysis.features import load_model
from dlviz.data.datasets import IMAGE_SETS, left_out_images
from dlviz.errors import UserError
from dlviz.figures import style
from dlviz.figures import verification as figs
from dlviz.preset.registry import LOSSES
from dlviz.preset.schema import validate
from dlviz_app import runs, shared
from dlviz_app.text import md

SHOWN = 2000  # points of each kind (trained classes, held-out digits) drawn on the plane at most


@st.cache_data(max_entries=8, show_spinner=False)
def _look(preset_text: str, run_id: str | None, step: int | None) -> dict:
    """The embeddings of the validation images and of the held-out digits at the weights asked for, on one plane, and the
    verification of the held-out digits' pairs (the validation split's when the preset holds no digit out)."""
    exp = validate(json.loads(preset_text))
    state = runs.store().load_checkpoint(run_id, step) if run_id else None
    net = load_model(exp, state, device="cpu")
    ds = shared.dataset(exp)
    digits = exp.data.name in IMAGE_SETS
    # a digit keeps its own value (and colour) whether it was trained on or held out
    val = np.array([int(ds.class_names[k]) for k in ds.y_val]) if digits else ds.y_val.numpy()
    x_out, out = left_out_images(exp.data) if digits else (ds.x_val[:0], val[:0])
    emb_val, emb_out = ver.embed(net, ds.x_val), ver.embed(net, x_out)
    coords, explained = ver.projection(np.concatenate([emb_val[:SHOWN], emb_out[:SHOWN]]))
    held = len(out) > 0
    v = ver.verify(emb_out if held else emb_val, out if held else val)
    return {
        "coords": coords,
        "codes": np.concatenate([val[:SHOWN], out[:SHOWN]]),
        "held_out": np.arange(len(coords)) >= min(len(val), SHOWN),
        "names": {int(k): str(d) for k, d in enumerate(ds.class_names)} if not digits else None,
        "explained": explained,
        "verification": v,
        "pairs_from": f"the held-out digits {', '.join(map(str, sorted(set(out.tolist()))))}" if held else "the validation split",
    }


def verification_tab() -> None:
    chosen = runs.choose_weights(
        "its embedding",
        lambda exp: exp.loss is not None and exp.loss.type in LOSSES and LOSSES[exp.loss.type].target == "embedding",
        "This preset is not a triplet-loss model: load the gallery's Siamese net (a triplet loss on the digits 0 to 7) to verify unseen digits here.",
        "This preset keeps no validation images (val_fraction is 0): set one on Train to draw its embedding.",
    )
    if chosen is None:
        return
    exp, run_id, step, _ = chosen
    try:
        look = _look(json.dumps(exp.to_dict(), sort_keys=True), run_id, step)
    except UserError as err:  # a checkpoint of another model, or images too few to pair
        st.error(md(err))
        return
    where = f"run checkpoint at step {step:,}" if run_id else "untrained"
    v: ver.Verification = look["verification"]
    roc, same = v.roc, v.pairs.same
    st.plotly_chart(
        figs.embedding_figure(look["coords"], look["codes"], look["held_out"], look["explained"], f"The embedding ({where})", look["names"]),
        config=style.CONFIG,
        key="vision_ver_embedding",
    )
    top = float(v.distances.max())
    best = ver.best_threshold(roc, int(same.sum()), int((~same).sum()))
    threshold = st.slider(
        "Distance threshold",
        0.0,
        max(top, 1e-6),
        best,
        max(top, 1e-6) / 200,
        format="%.3f",
        key=f"vision_ver_threshold|{run_id}|{step}",
        help="a pair whose embeddings lie at most this far apart is called the same; it starts at the most accurate threshold",
    )
    at = ver.at_threshold(v.distances, same, threshold)
    a, b, c, d = st.columns(4)
    a.metric("Accuracy", f"{at['accuracy']:.1%}")
    b.metric("True positive rate", f"{at['tpr']:.1%}", help="the share of same pairs called the same")
    c.metric("False positive rate", f"{at['fpr']:.1%}", help="the share of different pairs called the same")
    d.metric("AUC", f"{roc.auc:.3f}", help="the area under the ROC curve: the chance that a same pair lies closer than a different pair")
    left, right = st.columns(2)
    left.plotly_chart(
        figs.distance_figure(v.distances, same, threshold, f"Distances of {len(same):,} pairs of {look['pairs_from']}"),
        config=style.CONFIG,
        key="vision_ver_distances",
    )
    right.plotly_chart(
        figs.roc_figure(roc.fpr, roc.tpr, roc.auc, (at["fpr"], at["tpr"]), "ROC curve over the thresholds"), config=style.CONFIG, key="vision_ver_roc"
    )
    st.caption(
        f"One-shot verification: {int(same.sum()):,} pairs of one digit and {int((~same).sum()):,} of two, drawn from {look['pairs_from']}; "
        "a pair is called the same when its distance is at most the threshold. Lowering it trades false matches for missed ones."
    )
