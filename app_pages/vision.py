"""Vision: intersection over union between two boxes you drag, and a detector's boxes before and after non-max suppression."""

from __future__ import annotations

import json

import streamlit as st

from dlviz.analysis import detection
from dlviz.analysis.features import load_model
from dlviz.data import canvases
from dlviz.data.datasets import option
from dlviz.errors import UserError
from dlviz.figures import style
from dlviz.figures import vision as figs
from dlviz.preset.schema import validate
from dlviz_app import runs, shared
from dlviz_app.boxes import two_boxes
from dlviz_app.segmentation import segmentation_tab
from dlviz_app.text import md
from dlviz_app.verification import verification_tab

SIDE = 64  # the IoU plane, as large as a detection canvas
COORDS = ("x1", "y1", "x2", "y2")
START = {"A": (8, 8, 40, 40), "B": (24, 20, 56, 52)}
ELEMENT = "vision_boxes"
CORRECT = 0.5  # a detection counts as correct when its IoU with the true box is over this


# ---------------------------------------------------------------- IoU


def _key(name: str, coord: str) -> str:
    return f"vision_{name}_{coord}"


def _dragged() -> None:
    """A drag in the element ended: its boxes go into the number inputs before they are drawn."""
    event = (st.session_state.get(ELEMENT) or {}).get("boxes") or {}
    for name in START:
        box = event.get(name.lower())
        if isinstance(box, list) and len(box) == 4:
            for coord, v in zip(COORDS, box):
                st.session_state[_key(name, coord)] = int(min(max(v, 0), SIDE))


def iou_tab() -> None:
    st.caption(
        "Drag a box to move it, or one of its corners to resize it (or type its corners below). IoU is the area the two "
        "boxes share over the area they cover together; a detector's box counts as correct when its IoU with the true box is over 0.5."
    )
    for name, box in START.items():
        for coord, v in zip(COORDS, box):
            st.session_state.setdefault(_key(name, coord), v)
    boxes = {name: [st.session_state[_key(name, c)] for c in COORDS] for name in START}
    left, right = st.columns([3, 2])
    with left:
        two_boxes(boxes["A"], boxes["B"], SIDE, ELEMENT, _dragged)
    with right:
        for name in START:
            cols = st.columns(4)
            for col, coord in zip(cols, COORDS):
                col.number_input(f"{name} {coord}", 0, SIDE, step=1, key=_key(name, coord))
        boxes = {name: [st.session_state[_key(name, c)] for c in COORDS] for name in START}
        o = detection.overlap(boxes["A"], boxes["B"])
        a, b, c = st.columns(3)
        a.metric("Intersection", f"{o['intersection']:g} px²")
        b.metric("Union", f"{o['union']:g} px²")
        c.metric("IoU", f"{o['iou']:.3f}")
        flat = [name for name, (x1, y1, x2, y2) in boxes.items() if x2 <= x1 or y2 <= y1]
        if flat:
            st.warning(f"Box {' and '.join(flat)} has no area (x2 ≤ x1 or y2 ≤ y1), so it overlaps nothing: its IoU is 0.")
        if o["iou"] > CORRECT:
            st.success(f"IoU {o['iou']:.3f} > {CORRECT}: correct: a detection this close to the true box counts as found.")
        else:
            st.info(f"IoU {o['iou']:.3f} ≤ {CORRECT}: not correct: a detection this far off counts as a false positive.")


# ---------------------------------------------------------------- detection


@st.cache_resource(max_entries=4, show_spinner=False)
def _outputs(preset_text: str, run_id: str | None, step: int | None):
    """The model's grid on every validation canvas (CPU), at the weights asked for."""
    exp = validate(json.loads(preset_text))
    state = runs.store().load_checkpoint(run_id, step) if run_id else None
    net = load_model(exp, state)
    x = shared.dataset(exp).x_val
    return net(x.to(next(net.parameters()).device)).cpu()


@st.cache_data(max_entries=16, show_spinner=False)
def _map(preset_text: str, run_id: str | None, step: int | None, nms_threshold: float) -> tuple[float, dict]:
    exp = validate(json.loads(preset_text))
    anchors, y = option(exp.data, "anchors"), shared.dataset(exp).y_val
    found = [detection.detect(d, detection.MAP_CONFIDENCE, nms_threshold) for d in detection.grid_boxes(_outputs(preset_text, run_id, step), anchors)]
    return detection.mean_average_precision(found, detection.true_boxes(y, anchors), canvases.CLASSES)


def detection_tab() -> None:
    chosen = runs.choose_weights(
        "its detections",
        lambda exp: exp.data is not None and exp.data.name == canvases.NAME and exp.loss is not None and exp.loss.type == "YOLOLoss",
        "This preset is not a detection model: load the gallery's tiny YOLO (MNIST digits boxed on a 4×4 grid) to see its boxes here.",
        "This preset keeps no validation canvases (val_fraction is 0): set one on Train to score and look at its detections.",
    )
    if chosen is None:
        return
    exp, run_id, step, ds = chosen
    text = json.dumps(exp.to_dict(), sort_keys=True)
    anchors, grid, n = option(exp.data, "anchors"), option(exp.data, "grid"), len(ds.x_val)
    try:
        out = _outputs(text, run_id, step)
    except UserError as err:
        st.error(md(err))
        return
    a, b, c = st.columns(3)
    i = int(a.number_input(f"Validation canvas (0 to {n - 1:,})", 0, n - 1, 0, key="vision_canvas"))
    confidence = b.slider("Confidence threshold", 0.0, 1.0, 0.3, 0.01, key="vision_confidence", help="boxes scoring less are dropped before NMS")
    overlap = c.slider(
        "NMS IoU threshold", 0.0, 1.0, 0.5, 0.05, key="vision_nms", help="a box overlapping a better-scoring kept box by more than this is removed"
    )
    rows = detection.explain(detection.grid_boxes(out[i : i + 1], anchors)[0], confidence, overlap)
    t = detection.true_boxes(ds.y_val[i : i + 1], anchors)[0]
    truth = [{"box": box, "class": int(k)} for box, k in zip(t.boxes.tolist(), t.classes)]
    names = ds.class_names
    where = f"run checkpoint at step {step:,}" if run_id else "untrained"
    left, right = st.columns([3, 2])
    pixels = ds.pixels(ds.x_val[i, 0]).numpy()
    left.plotly_chart(
        figs.detection_figure(pixels, rows, truth, grid, names, f"Canvas {i}: {grid * grid * anchors} raw boxes ({where})"),
        config=style.CONFIG,
        key="vision_canvas_chart",
    )
    counts = {s: sum(r["status"] == s for r in rows) for s in ("kept", "suppressed", "low")}
    right.markdown(f"**{counts['kept']} kept**, {counts['suppressed']} removed by NMS, {counts['low']} below the confidence threshold")
    right.dataframe(
        [
            {
                "box": f"#{r['rank']}",
                "digit": names[r["class"]],
                "score": round(r["score"], 3),
                "what NMS did": {"kept": "kept", "low": "below confidence"}.get(r["status"]) or f"suppressed by #{r['by']}, IoU {r['iou']:.2f}",
            }
            for r in rows
            if r["status"] != "low"
        ],
        hide_index=True,
        column_config={"what NMS did": st.column_config.TextColumn(width="large")},
        key="vision_boxes_table",
    )
    mean, per_class = _map(text, run_id, step, overlap)
    right.metric(f"mAP@0.5 on the {n:,} validation canvases", f"{mean:.3f}")
    right.caption(
        f"Mean over the digits of the average precision (PASCAL VOC's all-point rule): every box scoring at least "
        f"{detection.MAP_CONFIDENCE} after NMS at IoU {overlap:g}, a match being IoU ≥ 0.5 with a true box of its digit. "
        + ", ".join(f"AP {names[k]}: {v:.2f}" for k, v in per_class.items())
    )


TABS = [("IoU", iou_tab), ("Detection", detection_tab), ("Segmentation", segmentation_tab), ("Verification", verification_tab)]

# only the open tab is drawn: the detection tab runs a model over the validation canvases
for tab, (_, draw) in zip(st.tabs([title for title, _ in TABS], key="vision_tab", on_change="rerun"), TABS):
    if tab.open:
        with tab:
            draw()
