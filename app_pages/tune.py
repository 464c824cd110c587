"""Tune: babysit the session's preset one button a step (sanity checks, a gradient check, backprop by hand, the
learning-rate range test), then search its hyperparameters with Optuna."""

import hashlib
import json
import math

import pandas as pd
import streamlit as st

from dlviz.errors import UserError
from dlviz.figures import tune as tfig
from dlviz.preset.edit import name_layers
from dlviz.preset.schema import validate
from dlviz_app import session
from dlviz_app.text import md

RESULTS = "tune_results"  # {section: (preset hash, result)}: a result shows only with the preset it was made of

st.title("Tune")
doc = session.preset()
text = json.dumps(doc, sort_keys=True)
key = hashlib.sha256(text.encode()).hexdigest()[:16]
try:
    exp = validate(doc)
    if exp.data is None or exp.loss is None or exp.optimizer is None:
        raise UserError("data", "Tune needs a preset with data, a loss and an optimizer; add them on Train")
except UserError as err:
    st.info(md(name_layers(doc, str(err))), icon=":material/info:")
    st.stop()
st.caption(f"Every check runs on the preset on screen: {exp.name or 'untitled'}, #{key[:7]}.")
results = st.session_state.setdefault(RESULTS, {})


def result(section: str):
    """The section's last result when it is of the preset on screen, else None."""
    got = results.get(section)
    return got[1] if got and got[0] == key else None


def keep(section: str, value) -> None:
    results[section] = (key, value)


def verdict_icon(ok) -> str:
    return "—" if ok is None else "✓" if ok else "✗"  # drawn by every font (an emoji needs an emoji font)


checks_tab, grad_tab, backprop_tab, lr_tab, search_tab = st.tabs(
    ["Sanity checks", "Gradient check", "Backprop step by step", "Learning-rate range test", "Hyperparameter search"]
)

# ---------------------------------------------------------------- sanity checks

with checks_tab:
    st.markdown(
        "The babysitting recipe's first steps, each a real computation on this preset: is the first loss what chance "
        "gives, does more regularization raise the loss, can the network learn 20 samples by heart, are its gradients "
        "right, and are its first updates the right size?"
    )
    if st.button("Run the sanity checks", icon=":material/checklist:", key="tune_checks"):
        from dlviz.analysis.sanity import sanity_checks

        try:
            with st.status("Running the sanity checks…", expanded=True) as box:
                found = sanity_checks(exp, on_check=lambda c: box.write(f"{verdict_icon(c.ok)} {c.name}"))
                box.update(label="Sanity checks done", state="complete", expanded=False)
            keep("checks", found)
        except UserError as err:
            st.error(md(name_layers(doc, str(err))))
    found = result("checks")
    if found:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "": verdict_icon(c.ok),
                        "check": c.name,
                        "measured": "" if c.value is None else f"{c.value:.4g}",
                        "against": c.reference,
                        "verdict": c.sentence,
                    }
                    for c in found
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        failed = [c for c in found if c.ok is False]
        (st.warning if failed else st.success)(f"{len(failed)} of {len(found)} checks failed." if failed else f"All {len(found)} checks passed.")

# ---------------------------------------------------------------- gradient check

with grad_tab:
    st.markdown(
        "Central finite differences in float64, (L(w + ε) − L(w − ε)) / 2ε for each weight, against autograd's "
        "gradient, on a few training samples. The relative error |a − n| / max(|a|, |n|) is fine below 1e-7 and wrong "
        "above 1e-2; in between, a kink (ReLU at 0, a max-pool tie) is the usual cause, and the table says when."
    )
    broken = st.toggle("Use a broken layer (a tanh whose backward is wrong on purpose)", key="tune_broken")
    if st.button("Check the gradients", icon=":material/functions:", key="tune_grad"):
        from dlviz.analysis.gradcheck import gradient_check

        try:
            with st.spinner("Checking every parameter tensor…"):
                keep("grad", (broken, gradient_check(exp, broken=broken)))
        except UserError as err:
            st.error(md(name_layers(doc, str(err))))
    got = result("grad")
    if got:
        was_broken, checks = got
        if was_broken:
            st.caption("With the broken layer in place of the model's first activation: its backward returns the wrong derivative.")
        st.plotly_chart(
            tfig.gradcheck_figure([c.name for c in checks], [c.max_rel_error for c in checks], [c.verdict for c in checks]),
            width="stretch",
            config={"displayModeBar": False},
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "tensor": c.name,
                        "shape": "×".join(map(str, c.shape)),
                        "entries checked": c.checked,
                        "worst relative error": f"{c.max_rel_error:.1e}",
                        "away from kinks": f"{c.max_smooth_error:.1e}",
                        "analytic": f"{c.analytic:.6g}",
                        "numeric": f"{c.numeric:.6g}",
                        "verdict": c.verdict,
                        "why": c.note,
                    }
                    for c in checks
                ]
            ),
            hide_index=True,
            width="stretch",
        )

# ---------------------------------------------------------------- backprop step by step

with backprop_tab:
    st.markdown(
        "Backpropagation is the chain rule with the forward pass's values kept: for each neuron, the upstream gradient "
        "∂L/∂a times the local derivative f′(z) gives ∂L/∂z, and ∂L/∂z times the input gives each weight's gradient. "
        "Every number below is the one autograd and the preset's optimizer produce."
    )
    from dlviz.analysis import backprop

    c1, c2 = st.columns([1, 3])
    sample = c1.number_input("Training sample", min_value=0, value=0, step=1, key="tune_sample")
    first = c1.toggle("Only the first two layers", key="tune_first", help="for a model larger than 3 layers of up to 4 neurons")
    try:
        trace = backprop.backprop_trace(exp, sample=int(sample), first_layers=2 if first else None)
    except UserError as err:
        trace = None
        c2.info(md(name_layers(doc, str(err))), icon=":material/info:")
    if trace is not None:
        stage = c2.radio("Stage", backprop.STAGES, horizontal=True, key="tune_stage", format_func=str.capitalize)
        for title, rows in backprop.stage_tables(trace, stage):
            st.markdown(f"**{title}**")
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

# ---------------------------------------------------------------- learning-rate range test

with lr_tab:
    st.markdown(
        "Train a fresh copy of the model for about 100 steps while the learning rate grows exponentially from 1e-7 to "
        "10 (Smith 2017). Where the loss starts falling, the rate is big enough; where it shoots up, too big."
    )
    if st.button("Run the range test", icon=":material/trending_down:", key="tune_lr"):
        from dlviz.analysis.lrfind import lr_range_test

        try:
            with st.spinner("Training while the rate grows…"):
                keep("lr", lr_range_test(exp))
        except UserError as err:
            st.error(md(name_layers(doc, str(err))))
    found = result("lr")
    if found:
        st.plotly_chart(tfig.lrfind_figure(found.lrs, found.losses, found.smoothed, found.suggested), width="stretch", config={"displayModeBar": False})
        now = float(exp.optimizer.args.get("lr", math.nan))
        st.markdown(f"Suggested rate **{found.suggested:.3g}** (the preset uses {now:.3g}): {found.rule}.")
        if found.stopped_early:
            st.caption(md(found.reason))

        def use_rate(rate=found.suggested):
            from dlviz.analysis.lrfind import with_lr

            session.apply(with_lr, rate)

        st.button(f"Use {found.suggested:.3g} as the learning rate", on_click=use_rate, key="tune_use_lr", icon=":material/check:")

# ---------------------------------------------------------------- hyperparameter search

SEARCH = "tune_search"  # {"search": SteppedSearch, "current": (trial number, run id) or None, "pruned": reason, "problem": text}


def default_space() -> dict:
    """A coarse first stage: the learning rate over three decades either side of the preset's, and L2 in log space."""
    lr = float(exp.optimizer.args.get("lr", 1e-3))
    return {
        "params": {
            "optimizer.lr": {"type": "log_uniform", "low": float(f"{lr / 30:.2g}"), "high": float(f"{min(lr * 30, 10.0):.2g}")},
            "training.l2": {"type": "log_uniform", "low": 1e-6, "high": 1e-2},
        }
    }


def start_search(space_doc=None):
    from dlviz.training.search import load_space
    from dlviz.training.trials import SteppedSearch

    stop_search()
    try:
        raw = space_doc if space_doc is not None else json.loads(st.session_state[f"tune_space_{key}"])
    except json.JSONDecodeError as err:
        st.session_state[SEARCH] = {"problem": f"space: not JSON ({err.msg} at line {err.lineno}, column {err.colno})"}
        return
    try:
        space = load_space(raw, exp)
        search = SteppedSearch(exp, space, int(st.session_state["tune_trials"]), sampler=st.session_state["tune_sampler"])
    except UserError as err:
        st.session_state[SEARCH] = {"problem": str(err)}
        return
    st.session_state[SEARCH] = {"search": search, "current": None, "pruned": "", "problem": "", "key": key}
    if space_doc is not None:
        st.session_state[f"tune_space_{key}"] = json.dumps(space.to_json(), indent=2)


def stop_search():
    state = st.session_state.get(SEARCH) or {}
    if state.get("current"):
        runs.runner().stop(state["current"][1], block=False)
        state["search"].finish(state["current"][0], {"status": "stopped", "reason": "the search was stopped"})
        state["current"] = None
    if state.get("search"):
        state["search"].asked = state["search"].trials  # ask for no more


def drive(state: dict) -> None:
    """One step of the search: report the trial's epochs, finish it when its run ends, start the next trial's run."""
    runner, search = runs.runner(), state["search"]
    runner.touch(bid)
    if state["current"]:
        number, rid = state["current"]
        h = runner.handle(rid)
        snap = h.feed.snapshot() if h is not None else None
        if h is not None and h.alive:
            if not state["pruned"]:
                state["pruned"] = search.report(number, snap["epochs"])
                if state["pruned"]:
                    runner.stop(rid, block=False)
            return
        if snap is not None:
            search.report(number, snap["epochs"])
        search.finish(number, snap["result"] if snap else None, state["pruned"])
        state["current"], state["pruned"] = None, ""
    if runner.active(bid):  # a run of this person's trains (Train, the Playground): the next trial waits for it
        state["problem"] = "Another run of yours is training, and a person trains one run at a time: the search waits for it."
        return
    nxt = search.ask()
    if nxt is None:
        return
    number, texp = nxt
    try:
        h = runner.start(texp, bid, address=runs.client_address())
    except UserError as err:  # the server is full: this trial fails with the reason, and the next one tries again
        search.finish(number, {"status": "failed", "reason": str(err)})
        state["problem"] = str(err)
        return
    state["problem"] = ""
    search.started(number, h.run_id)
    state["current"] = (number, h.run_id)


with search_tab:
    from dlviz import limits
    from dlviz.training.search import SAMPLERS
    from dlviz_app import runs

    bid = runs.browser_id()
    st.markdown(
        "Random search first, the learning rate in log space (Bergstra & Bengio 2012), then **Zoom** in on the best "
        "trials for the next stage. Each trial is an ordinary run of this preset with the sampled values: it trains in "
        "the server's workers like a run started on Train, and Compare and Inspect reach it. Trials that fall behind the "
        "median are stopped early."
    )
    c1, c2 = st.columns([2, 1])
    c1.text_area(
        "Space: each preset path with its range (uniform, log_uniform, int, or categorical choices)",
        json.dumps(default_space(), indent=2),
        height=190,
        key=f"tune_space_{key}",
    )
    c2.number_input("Trials", min_value=1, max_value=limits.current().max_trials, value=12, key="tune_trials")
    c2.selectbox("Sampler", SAMPLERS, key="tune_sampler", format_func=lambda s: {"random": "random", "tpe": "TPE (Bayesian)"}[s])
    state = st.session_state.get(SEARCH) or {}
    active = bool(state.get("search")) and not state["search"].done
    b1, b2 = c2.columns(2)
    b1.button("Search", icon=":material/search:", on_click=start_search, key="tune_search_go", disabled=active, width="stretch")
    b2.button("Stop", icon=":material/stop:", on_click=stop_search, key="tune_search_stop", disabled=not active, width="stretch")
    if state.get("problem") and not state.get("search"):
        st.error(md(state["problem"]))

    @st.fragment(run_every=1.0 if active else None)
    def search_view():
        state = st.session_state.get(SEARCH) or {}
        search = state.get("search")
        if search is None:
            return
        if not search.done:
            drive(state)
            if not active:
                st.rerun()  # a search started in this fragment (Zoom): the whole page, for the buttons and the timer
        elif active:
            st.rerun()  # the search ended: the buttons once more, without the timer
        if state.get("key") != key:
            st.caption("This search is of an earlier version of the preset; its best trial loads that version with the trial's values.")
        if state.get("problem"):
            st.caption(md(state["problem"]))
        done = search.results()
        st.markdown(
            f"**Study {search.study.study_name}**: {len(done)} of {search.trials} trials finished"
            + (f", trial {state['current'][0]} training" if state.get("current") else "")
        )
        if done:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "trial": t.number,
                            "state": t.state,
                            "validation loss": t.value,
                            **{p: v for p, v in t.params.items()},
                            "run": t.run_id,
                            "why": t.reason,
                        }
                        for t in done
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
        best = search.best()
        if best is not None:
            trial, preset = best
            d1, d2 = st.columns(2)

            # a click in a fragment reruns the fragment only: the whole page reruns for the new preset (its address,
            # the sidebar)
            def load_best(doc=preset):
                session.set_preset(doc)
                session.keep_in_address()  # written here, in the click's own run: the address never lags the page

            if d1.button(
                f"Load trial {trial.number} (validation loss {trial.value:.4g}) as the preset",
                on_click=load_best,
                icon=":material/download:",
                key="tune_load_best",
                disabled=not search.done,
            ):
                st.rerun()

            def zoom_in():
                from dlviz.training.search import zoom

                start_search(zoom(search.space, search.study).to_json())

            d2.button("Zoom: search again around the best trials", on_click=zoom_in, icon=":material/zoom_in:", key="tune_zoom", disabled=not search.done)
        complete = [t for t in done if t.state == "complete"]
        if len(complete) >= 2:
            import optuna.visualization as ov

            figures = [("Parallel coordinates", ov.plot_parallel_coordinate), ("Optimization history", ov.plot_optimization_history)]
            if len(search.space.params) >= 2:
                figures.append(("Contour", ov.plot_contour))
            if len(complete) >= 3:
                figures.append(("Parameter importances", ov.plot_param_importances))
            cols = st.columns(2)
            for i, (name, plot) in enumerate(figures):
                try:
                    fig = plot(search.study)
                except (ValueError, RuntimeError) as err:  # too few distinct values for this plot yet
                    cols[i % 2].caption(f"{name}: {err}")
                    continue
                fig.update_layout(title=f"{name} (Optuna's plot)", height=360, margin={"l": 40, "r": 10, "t": 40, "b": 40})
                cols[i % 2].plotly_chart(fig, width="stretch", config={"displayModeBar": False}, key=f"tune_fig_{name}")

    search_view()
