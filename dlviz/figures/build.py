"""The Build page's pictures: the architecture graph (its layout, and its drawing as SVG) and the layer table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import networkx as nx
import pandas as pd

from dlviz.errors import json_path
from dlviz.preset.edit import TOP, layer_label, parse_path
from dlviz.preset.registry import ALL_LAYERS, shape_str
from dlviz.text import clean

GROUP_COLORS = {
    "dense": "#4C78A8",
    "convolution": "#F58518",
    "pooling": "#54A24B",
    "normalization": "#B279A2",
    "regularization": "#9D755D",
    "shape": "#72B7B2",
    "recurrent": "#E45756",
    "attention": "#EECA3B",
    "activation": "#FF9DA6",
    "blocks": "#BAB0AC",
    "io": "#6B6B6B",
}
EDGE_COLOR = "#9A9A9A"


def human_count(n: int) -> str:
    """1234567 -> '1.23M': for hover text and labels, where exact digits do not help."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def size_text(v) -> str:
    """A receptive-field number, or one per spatial dimension when they differ: 16 or '16×12'."""
    return "×".join(str(x) for x in v) if isinstance(v, list) else str(v)


def _rf_text(rf: Optional[dict]) -> str:
    if not rf:
        return ""
    return f"size {size_text(rf['size'])}, stride {size_text(rf['stride'])}, padding {size_text(rf['padding'])}"


# ---------------------------------------------------------------- architecture graph


@dataclass
class _Extent:
    """How far a layer's drawing reaches left and right of the axis its list is drawn on (in node widths)."""

    left: float = 0.5
    right: float = 1.3  # node labels are written to the right of their node

    @property
    def width(self) -> float:
        return self.left + self.right


LANE = 0.5  # width kept free for an identity path (empty shortcut or empty Concat branch)


def _extent(layers: list) -> _Extent:
    ext = _Extent()
    for layer in layers:
        e = _layer_extent(layer)
        ext = _Extent(max(ext.left, e.left), max(ext.right, e.right))
    return ext


def _layer_extent(layer: dict) -> _Extent:
    t = layer.get("type")
    if t == "Sequential":
        return _extent(layer.get("layers") or [])
    if t == "Residual":
        body = _extent(layer.get("body") or [])
        short = layer.get("shortcut") or []
        return _Extent(body.left, body.right + (_extent(short).width if short else LANE))
    if t == "Concat":
        total = sum(_extent(b).width if b else LANE for b in layer.get("branches") or [])
        return _Extent(total / 2, total / 2)
    return _Extent()


COLLAPSE_FROM = 120  # layers beyond which runs of identical layers share one node: a thousand nodes are no picture


class _GraphBuilder:
    """Turns a model section and its summary rows into a DiGraph whose nodes carry x positions and drawing data."""

    def __init__(self, rows: dict[str, Any], collapse: bool = False):
        self.rows = rows
        self.collapse = collapse  # runs of identical layers drawn as one node
        self.g = nx.MultiDiGraph()  # a Residual with an empty body has two edges from one node into its "+"
        self.groups: list[tuple[str, list[str]]] = []  # named Sequential blocks: (label, their node ids)

    def add_node(self, node: str, x: float, kind: str, label: str, group: str, row: Any = None) -> None:
        self.g.add_node(node, x=x, kind=kind, label=label, group=group, row=row)

    def chain(self, layers: list, container: tuple, prev: str, axis: float) -> str:
        run = None  # the node of the last leaf layer, while the following ones repeat it
        for i, layer in enumerate(layers):
            same = (
                self.collapse
                and run is not None
                and layer.get("type") in ALL_LAYERS
                and {k: v for k, v in layer.items() if k != "name"} == self.g.nodes[run]["spec"]
            )
            if same:  # one node for a run of identical layers, labelled with the count and the last one's output
                data = self.g.nodes[run]
                data["repeat"] += 1
                data["label"] = f"{data['base']} ×{data['repeat']}"
                data["row"] = self.rows.get(json_path((*container, i)))
                continue
            prev = self.layer(layer, (*container, i), prev, axis)
            run = prev if layer.get("type") in ALL_LAYERS else None
            if run is not None:
                data = self.g.nodes[run]
                data.update(spec={k: v for k, v in layer.items() if k != "name"}, repeat=1, base=data["label"])
        return prev

    def layer(self, layer: dict, path: tuple, prev: str, axis: float) -> str:
        node = json_path(path)
        row = self.rows.get(node)
        t = layer.get("type")
        if t == "Sequential":
            before = set(self.g.nodes)
            last = self.chain(layer.get("layers") or [], (*path, "layers"), prev, axis)
            if layer.get("name"):
                self.groups.append((clean(layer["name"]), [n for n in self.g.nodes if n not in before]))
            return last
        if t == "Residual":
            body = _extent(layer.get("body") or [])
            merge = node + "+"
            end_body = self.chain(layer.get("body") or [], (*path, "body"), prev, axis)
            self.add_node(merge, axis, "add", "+", "blocks", row)
            self.g.add_edge(end_body, merge)
            short = layer.get("shortcut") or []
            if short:
                s_axis = axis + body.right + _extent(short).left
                end_short = self.chain(short, (*path, "shortcut"), prev, s_axis)
                self.g.add_edge(end_short, merge)
            else:
                self.g.add_edge(prev, merge, lane=axis + body.right + LANE / 2)
            return merge
        if t == "Concat":
            branches = layer.get("branches") or []
            widths = [_extent(b).width if b else LANE for b in branches]
            merge = node + "+"
            left = axis - sum(widths) / 2
            ends = []
            for j, (branch, w) in enumerate(zip(branches, widths)):
                if branch:
                    ends.append((self.chain(branch, (*path, "branches", j), prev, left + _extent(branch).left), None))
                else:
                    ends.append((prev, left + w / 2))
                left += w
            self.add_node(merge, axis, "concat", "concat", "blocks", row)
            for end, lane in ends:
                self.g.add_edge(end, merge, **({"lane": lane} if lane is not None else {}))
            return merge
        entry = ALL_LAYERS.get(t)
        self.add_node(node, axis, "layer", clean(layer_label(layer)), entry.group if entry else "blocks", row)
        self.g.add_edge(prev, node)
        return node


def model_graph(summary, model: dict) -> tuple[nx.MultiDiGraph, list[tuple[str, list[str]]]]:
    """The model as a directed graph from an input node to an output node, with a merge node per Residual and Concat.

    Nodes carry `x` (column), `rank` (longest path from the input), `kind`, `label`, `group` and the summary
    `row`; edges carry `lane`, an x to route an identity path through. Also returns the named Sequential
    groups as (name, node ids)."""
    b = _GraphBuilder({r.path: r for r in summary.rows}, collapse=len(summary.rows) > COLLAPSE_FROM)
    b.add_node("input", 0.0, "input", f"input {shape_str(summary.input_shape)}", "io")
    last = b.chain(model.get("layers") or [], TOP, "input", 0.0)
    b.add_node("output", 0.0, "output", f"output {shape_str(summary.output_shape)}", "io")
    b.g.add_edge(last, "output")
    for node in nx.topological_sort(b.g):
        preds = [b.g.nodes[p]["rank"] for p in b.g.predecessors(node)]
        b.g.nodes[node]["rank"] = max(preds) + 1 if preds else 0
    return b.g, b.groups


def _out_shape(g: nx.MultiDiGraph, node: str, summary) -> list:
    if node == "input":
        return summary.input_shape
    row = g.nodes[node]["row"]
    return row.output_shape if row is not None else []


def _hover(data: dict) -> list[str]:
    """The lines a node's tooltip shows: its layer, place, shapes, parameters, FLOPs and receptive field."""
    row = data["row"]
    if row is None:
        return [data["label"]]
    lines = [data["label"] + (f" “{clean(row.name)}”" if row.name else ""), clean(row.path), f"{shape_str(row.input_shape)} → {shape_str(row.output_shape)}"]
    if data["kind"] == "layer":
        params = row.trainable_params + row.non_trainable_params
        lines.append(f"params {params:,}" + (f" ({row.non_trainable_params:,} frozen)" if row.non_trainable_params else ""))
        lines.append(f"FLOPs {human_count(row.flops)}")
    else:
        lines.append(f"block params {row.trainable_params + row.non_trainable_params:,}, FLOPs {human_count(row.flops)}")
    if row.receptive_field:
        lines.append("receptive field " + _rf_text(row.receptive_field))
    return lines


def _label_edges(g: nx.MultiDiGraph, pos: dict) -> dict:
    """For each node, the one out-edge that shows its output shape: every edge out of a node carries the same
    tensor, so one label is enough; a straight edge down is preferred, an identity lane is the last resort."""
    out = {}
    for u in g.nodes:
        edges = list(g.out_edges(u, keys=True, data=True))
        if edges:
            best = min(edges, key=lambda e: ("lane" in e[3], pos[e[1]][0] != pos[u][0]))
            out[u] = (best[1], best[2])
    return out


ROW_PX = 44  # vertical pixels per rank: room for a node label and an edge label between two nodes
COL_PX = 110  # horizontal pixels per column unit (a node's drawing reaches 0.5 left and 1.3 right of its axis)
TEXT_COLOR = "#31333F"  # Streamlit's body text
# how each kind of node is drawn: (shape, size in px, colour key, where its label goes)
NODE_STYLES = {
    "input": ("square", 14, "io", "right"),
    "output": ("square", 14, "io", "right"),
    "add": ("circle", 18, None, "center"),
    "concat": ("diamond", 16, "blocks", "right"),
}
LEGEND_NAMES = {"add": "residual +", "input": "input / output"}
# What SVG text must escape, and the characters that mean something to the Markdown the page draws the graph through
# (emphasis, math, emoji and icon shortcodes, links, code), written as character references, which only the HTML
# parser reads.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", **{c: f"&#{ord(c)};" for c in "$*_:`[]\\~#|{}"}})


def _esc(text) -> str:
    """`text` (a name from a preset among it) as SVG character data or an attribute value, on one line (clean writes
    a line break as its escape)."""
    return clean(text).translate(_ESCAPES)


def _text_px(text: str, size: float) -> float:
    """An estimate of the width of `text` at `size` px in the page's sans-serif font, for laying out labels."""
    return 0.55 * size * len(text)


def _node_style(key: str) -> tuple[str, int, str, str]:
    """How a node of `key` (a layer group, or input, output, add, concat) is drawn: shape, size, fill, label place."""
    shape, size, color_key, where = NODE_STYLES.get(key, ("circle", 14, key, "right"))
    return shape, size, "white" if color_key is None else GROUP_COLORS.get(color_key, GROUP_COLORS["blocks"]), where


def _polyline(xs: list, ys: list, to_px) -> str:
    pts = " ".join("{:.1f},{:.1f}".format(*to_px(x, y)) for x, y in zip(xs, ys))
    return f'<polyline points="{pts}" fill="none" stroke="{EDGE_COLOR}" stroke-width="1.5"/>'


def _marker(shape: str, cx: float, cy: float, size: float, color: str) -> str:
    r = size / 2
    stroke = 'stroke="#555555" stroke-width="1"'
    if shape == "square":
        return f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{size}" height="{size}" fill="{color}" {stroke}/>'
    if shape == "diamond":
        return f'<polygon points="{cx:.1f},{cy - r:.1f} {cx + r:.1f},{cy:.1f} {cx:.1f},{cy + r:.1f} {cx - r:.1f},{cy:.1f}" fill="{color}" {stroke}/>'
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{color}" {stroke}/>'


def _edges(g: nx.MultiDiGraph, pos: dict, summary) -> tuple[list, list]:
    """Each edge as its route (xs, ys in graph units), and the output-shape labels as (x, y, text)."""
    routes, labels = [], []
    label_edge = _label_edges(g, pos)
    for u, v, k, d in g.edges(keys=True, data=True):
        (x0, y0), (x1, y1) = pos[u], pos[v]
        # leave a node straight down before turning aside, so edges do not cross its label on the right
        if "lane" in d:
            xs, ys = [x0, x0, d["lane"], d["lane"], x1], [y0, y0 + 0.3, y0 + 0.6, y1 - 0.5, y1]
        elif x0 != x1 and y1 - y0 > 1:
            xs, ys = [x0, x0, x1], [y0, y1 - 0.6, y1]
        elif x0 != x1:
            xs, ys = [x0, x0, x1], [y0, y0 + 0.3, y1]
        else:
            xs, ys = [x0, x1], [y0, y1]
        routes.append((xs, ys))
        if label_edge.get(u) == (v, k):
            labels.append((xs[0] - 0.06, (ys[0] + ys[1]) / 2, shape_str(_out_shape(g, u, summary))))
    return routes, labels


def architecture_svg(summary, model: dict) -> str:
    """The model drawn top to bottom as an SVG: one node per layer, branches side by side, the tensor shape on each
    edge, named blocks framed, a legend of the layer groups above, and each node's details in its tooltip.

    `summary` is build.summarize's result and `model` the preset's model section it was computed from. Drawn on the
    server as plain SVG, so the first page shows it without drawing a chart in the browser."""
    g, groups = model_graph(summary, model)
    pos = {n: (d["x"], float(d["rank"])) for n, d in g.nodes(data=True)}  # y grows downwards, one unit a rank
    xs = [p[0] for p in pos.values()]
    wide = max(xs) - min(xs) > 3  # several branches side by side share the width: smaller labels
    font = 10 if wide else 12
    ranks = max(d["rank"] for _, d in g.nodes(data=True))

    by_group: dict[str, list[str]] = {}
    for n, d in g.nodes(data=True):
        by_group.setdefault(d["group"] if d["kind"] == "layer" else d["kind"], []).append(n)
    legend = [(key, LEGEND_NAMES.get(key, key)) for key in by_group if key != "output"]
    routes, labels = _edges(g, pos, summary)
    named = [(name, max(pos[n][0] for n in nodes) + 1.25) for name, nodes in groups if nodes]  # a frame's name ends at its right
    left = min(min(xs) - 0.8, *(lx - (_text_px(text, 10) + 6) / COL_PX for lx, _, text in labels), *(x - _text_px(name, 11) / COL_PX for name, x in named))
    right = max(max(xs) + 1.8, *(pos[n][0] + 0.25 + _text_px(g.nodes[n]["label"], font) / COL_PX for n in g.nodes))
    width = max(360.0, (right - left) * COL_PX)
    placed, x, y = [], 6.0, 14.0  # the legend's items flow left to right and wrap: (x, baseline y) of each
    for _, name in legend:
        w = 26 + _text_px(name, 11)
        if x > 6 and x + w > width:
            x, y = 6.0, y + 20
        placed.append((x, y))
        x += w
    top = y + 30
    height = top + ROW_PX * ranks + 30

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (x - left) * COL_PX, top + y * ROW_PX

    out = [f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>']
    for (key, name), (x, y) in zip(legend, placed):
        shape, _, color, _ = _node_style(key)
        out.append(_marker(shape, x + 6, y - 4, 10, color))
        out.append(f'<text x="{x + 16:.1f}" y="{y:.1f}" font-size="11" fill="{TEXT_COLOR}">{_esc(name)}</text>')

    for name, nodes in groups:
        if not nodes:
            continue
        gx = [pos[n][0] for n in nodes]
        gy = [pos[n][1] for n in nodes]
        (x0, y0), (x1, y1) = to_px(min(gx) - 0.45, min(gy) - 0.4), to_px(max(gx) + 1.25, max(gy) + 0.4)
        out.append(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" fill="rgba(200,200,200,0.08)" stroke="#CCCCCC" stroke-dasharray="2,2"/>'
        )
        out.append(f'<text x="{x1:.1f}" y="{y0 - 3:.1f}" text-anchor="end" font-size="11" fill="#777777">{_esc(name)}</text>')

    out += [_polyline(rx, ry, to_px) for rx, ry in routes]
    for lx, ly, text in labels:
        px, py = to_px(lx, ly)
        out.append(f'<text x="{px:.1f}" y="{py + 3.5:.1f}" text-anchor="end" font-size="10" fill="#777777">{_esc(text)}</text>')

    for key, nodes in by_group.items():
        shape, size, color, where = _node_style(key)
        for n in nodes:
            data = g.nodes[n]
            cx, cy = to_px(*pos[n])
            label = _esc(data["label"])
            if where == "center":
                text = f'<text x="{cx:.1f}" y="{cy + 4:.1f}" text-anchor="middle" font-size="{font}" fill="{TEXT_COLOR}">{label}</text>'
            else:
                text = f'<text x="{cx + size / 2 + 6:.1f}" y="{cy + font / 3:.1f}" font-size="{font}" fill="{TEXT_COLOR}">{label}</text>'
            tip = "\n".join(_esc(line) for line in _hover(data))
            out.append(f"<g><title>{tip}</title>{_marker(shape, cx, cy, size, color)}{text}</g>")

    # An HTML block of its own for Markdown: the opening tag alone on the first line, and no blank line inside.
    svg = "\n".join(out)
    return (
        f'<div class="dlviz-architecture" style="overflow-x: auto">\n<svg role="img" aria-label="the architecture graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">\n{svg}\n</svg>\n</div>'
    )


# ---------------------------------------------------------------- summary table


SUMMARY_COLUMNS = ["layer", "type", "output shape", "params", "FLOPs", "RF size", "RF stride", "RF padding"]


def _rf_cell(rf: Optional[dict], key: str) -> str:
    return size_text(rf[key]) if rf else ""


def summary_frame(summary) -> pd.DataFrame:
    """One row per layer and block (the layer path indented by depth) and a totals row last."""
    records = []
    for r in summary.rows:
        where = json_path(_relative(r.path))
        records.append(
            {
                "layer": "\u2003" * r.depth + where + (f" “{clean(r.name)}”" if r.name else ""),
                "type": r.type,
                "output shape": shape_str(r.output_shape),
                "params": r.trainable_params + r.non_trainable_params,
                "frozen": r.non_trainable_params,
                "FLOPs": r.flops,
                "RF size": _rf_cell(r.receptive_field, "size"),
                "RF stride": _rf_cell(r.receptive_field, "stride"),
                "RF padding": _rf_cell(r.receptive_field, "padding"),
            }
        )
    rf = summary.receptive_field
    records.append(
        {
            "layer": "Total",
            "type": "",
            "output shape": shape_str(summary.output_shape),
            "params": summary.total_params,
            "frozen": summary.total_params - summary.trainable_params,
            "FLOPs": summary.flops,
            "RF size": _rf_cell(rf, "size"),
            "RF stride": _rf_cell(rf, "stride"),
            "RF padding": _rf_cell(rf, "padding"),
        }
    )
    frame = pd.DataFrame.from_records(records, columns=[*SUMMARY_COLUMNS[:4], "frozen", *SUMMARY_COLUMNS[4:]])
    # the frozen parameters (trainable: false) get a column only in a model that has some
    return frame if summary.trainable_params < summary.total_params else frame.drop(columns="frozen")


def _relative(path: str) -> tuple:
    loc = parse_path(path)
    return loc[2:] if loc[:2] == TOP else loc
