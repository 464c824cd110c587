"""Inspect's probabilities: what a classifier's logits mean for the input on screen, and the Round-off lab that shows
why the loss takes logits rather than probabilities."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from dlviz.analysis import features
from dlviz.analysis import roundoff as ro
from dlviz.errors import UserError
from dlviz.figures import inspect as figs
from dlviz.figures import style
from dlviz.model.build import Network, device_of
from dlviz.preset.schema import Experiment
from dlviz_app import shared


@st.cache_data(max_entries=64, show_spinner=False)
def _output(_net: Network, key: tuple, _x: torch.Tensor) -> torch.Tensor:
    """The model's output for one input; `key` names the model and the input (neither is hashed)."""
    with torch.no_grad():
        return _net(_x.to(device_of(_net)))[0].float().cpu()


def prediction(exp: Experiment, net: Network, inp: features.ModelInput, key: tuple) -> None:
    """The softmax probabilities (a sigmoid's, for one binary logit) of the model's output for the input, per class
    name; nothing for a model that does not classify."""
    if exp.loss is None:
        return
    out = _output(net, key, inp.x)
    probs = ro.class_probabilities(out, exp.loss.type)
    if probs is None:
        return
    names = None
    if exp.data is not None:
        try:
            names = shared.dataset(exp).class_names
        except UserError:  # a data set that cannot load here (an upload another server holds): the classes by number
            names = None
    if not names or len(names) != len(probs):
        names = [str(i) for i in range(len(probs))]
    st.plotly_chart(figs.probabilities_figure.unchecked(probs, names), config=style.CONFIG, key="inspect_probabilities")
    logits = ", ".join(f"{v:.3g}" for v in out.reshape(-1).tolist()[:12])
    st.caption(f"The model outputs logits ({logits}{', …' if out.numel() > 12 else ''}); softmax turns them into these probabilities, which add up to 1.")


def roundoff_lab() -> None:
    """Scale a logit vector up and compare softmax-then-log in float32 with log-softmax through logsumexp."""
    st.caption(
        "A loss could take probabilities: softmax the logits, then take the log. In float32, exp overflows past "
        f"z ≈ {ro.FLOAT32_EXP_LIMIT:.2f} (inf / inf is NaN) and small probabilities underflow to 0 (log 0 = −inf). "
        "log_softmax(z) = z − logsumexp(z), with logsumexp(z) = max z + log Σ exp(z − max z), never exponentiates "
        "above 0, and nn.CrossEntropyLoss takes the logits and computes it that way."
    )
    left, right = st.columns([3, 1])
    scale = left.select_slider("Scale the logits ×", options=[1, 2, 5, 10, 20, 30, 40, 45, 50, 100, 200, 500, 1000], value=1, key="roundoff_scale")
    target = right.selectbox("True class", range(len(ro.EXAMPLE_LOGITS)), key="roundoff_target", help="the class the loss is taken for")
    r = ro.roundoff(ro.EXAMPLE_LOGITS, float(scale), int(target))
    st.dataframe(pd.DataFrame(r.rows()), hide_index=True, width="stretch")
    a, b, c = st.columns(3)
    a.metric("−log(naive softmax)[true]", f"{r.naive_loss:.6g}")
    b.metric("−(z − logsumexp(z))[true]", f"{r.stable_loss:.6g}")
    c.metric("nn.CrossEntropyLoss", f"{r.cross_entropy:.6g}")
    if r.naive_fails:
        st.warning("The naive route has lost the numbers here: an exp overflowed to inf or a probability underflowed to 0.", icon=":material/warning:")
    runs = [ro.roundoff(ro.EXAMPLE_LOGITS, float(s), int(target)) for s in ro.SCALES]
    st.plotly_chart(
        figs.roundoff_figure(list(ro.SCALES), [x.naive_loss for x in runs], [x.stable_loss for x in runs]), config=style.CONFIG, key="roundoff_curve"
    )
    first = next((s for s, x in zip(ro.SCALES, runs) if x.naive_fails), None)
    if first is not None:
        st.caption(f"Logits {list(ro.EXAMPLE_LOGITS)} with class {target} true: the naive loss first fails at ×{first}; logsumexp never does.")
