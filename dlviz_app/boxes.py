"""Two boxes on a plane, in one browser element: drag a box to move it, drag a corner to resize it.

`two_boxes(a, b, side, key, on_change)` mounts the element with the boxes [x1, y1, x2, y2] (pixels of a side×side plane, y
down) and returns nothing; when a drag ends, the element sends {"a": [...], "b": [...], "n": counter} as its "boxes" event,
and `on_change` runs before the rerun, finding the event in `st.session_state[key]["boxes"]`. While a box is dragged, the
element redraws the boxes and their overlap itself, without a rerun."""

from __future__ import annotations

import streamlit as st

_JS = r"""
const NS = 'http://www.w3.org/2000/svg';
const COLORS = { a: '#1f77b4', b: '#ff7f0e' };
function sel(tag, parent, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  parent.appendChild(e);
  return e;
}
function draw(s) {
  for (const name of ['a', 'b']) {
    const [x1, y1, x2, y2] = s.boxes[name];
    const r = s.rects[name];
    r.setAttribute('x', Math.min(x1, x2)); r.setAttribute('y', Math.min(y1, y2));
    r.setAttribute('width', Math.abs(x2 - x1)); r.setAttribute('height', Math.abs(y2 - y1));
    s.handles[name].forEach((h, i) => { h.setAttribute('cx', i % 2 ? x2 : x1); h.setAttribute('cy', i < 2 ? y1 : y2); });
    s.labels[name].setAttribute('x', Math.min(x1, x2) + 0.6); s.labels[name].setAttribute('y', Math.min(y1, y2) + 3.2);
  }
  const A = s.boxes.a, B = s.boxes.b;
  const lx = Math.max(A[0], B[0]), ly = Math.max(A[1], B[1]), hx = Math.min(A[2], B[2]), hy = Math.min(A[3], B[3]);
  const on = hx > lx && hy > ly;
  s.inter.setAttribute('x', lx); s.inter.setAttribute('y', ly);
  s.inter.setAttribute('width', on ? hx - lx : 0); s.inter.setAttribute('height', on ? hy - ly : 0);
}
function point(s, ev) {
  const p = s.svg.createSVGPoint(); p.x = ev.clientX; p.y = ev.clientY;
  const q = p.matrixTransform(s.svg.getScreenCTM().inverse());
  return [Math.max(0, Math.min(s.side, q.x)), Math.max(0, Math.min(s.side, q.y))];
}
function build(root, s) {
  root.innerHTML = '';
  s.svg = sel('svg', root, { viewBox: `0 0 ${s.side} ${s.side}`, width: '100%', 'data-testid': 'iou-plane',
    style: 'max-width: 420px; aspect-ratio: 1; background: #fafafa; border: 1px solid #ccc; touch-action: none; user-select: none' });
  for (let k = 8; k < s.side; k += 8) {
    sel('line', s.svg, { x1: k, x2: k, y1: 0, y2: s.side, stroke: '#eee', 'stroke-width': 0.2 });
    sel('line', s.svg, { y1: k, y2: k, x1: 0, x2: s.side, stroke: '#eee', 'stroke-width': 0.2 });
  }
  s.rects = {}; s.handles = {}; s.labels = {};
  for (const name of ['a', 'b']) {
    s.rects[name] = sel('rect', s.svg, { fill: COLORS[name], 'fill-opacity': 0.12, stroke: COLORS[name], 'stroke-width': 0.8,
      cursor: 'move', 'data-testid': 'iou-box-' + name });
    s.labels[name] = sel('text', s.svg, { fill: COLORS[name], 'font-size': 3, 'font-family': 'sans-serif', 'pointer-events': 'none' });
    s.labels[name].textContent = name.toUpperCase();
  }
  s.inter = sel('rect', s.svg, { fill: '#d62728', 'fill-opacity': 0.35, 'pointer-events': 'none', 'data-testid': 'iou-intersection' });
  for (const name of ['a', 'b']) {
    s.handles[name] = [0, 1, 2, 3].map((i) => sel('circle', s.svg, { r: 1.4, fill: 'white', stroke: COLORS[name], 'stroke-width': 0.6,
      cursor: i === 0 || i === 3 ? 'nwse-resize' : 'nesw-resize', 'data-testid': `iou-corner-${name}-${i}` }));
  }
  const start = (name, corner) => (ev) => {
    ev.preventDefault(); ev.stopPropagation();
    s.svg.setPointerCapture(ev.pointerId);
    s.drag = { name, corner, from: point(s, ev), box: s.boxes[name].slice() };
  };
  for (const name of ['a', 'b']) {
    s.rects[name].addEventListener('pointerdown', start(name, -1));
    s.handles[name].forEach((h, i) => h.addEventListener('pointerdown', start(name, i)));
  }
  s.svg.addEventListener('pointermove', (ev) => {
    const d = s.drag; if (!d) return;
    const [x, y] = point(s, ev), b = d.box.slice();
    if (d.corner < 0) {
      const dx = Math.max(-b[0], Math.min(s.side - b[2], x - d.from[0])), dy = Math.max(-b[1], Math.min(s.side - b[3], y - d.from[1]));
      s.boxes[d.name] = [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy].map((v) => Math.round(v));
    } else {
      if (d.corner % 2) b[2] = x; else b[0] = x;
      if (d.corner < 2) b[1] = y; else b[3] = y;
      s.boxes[d.name] = [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])].map((v) => Math.round(v));
    }
    draw(s);
  });
  const end = () => {
    if (!s.drag) return;
    s.drag = null;
    s.n += 1;
    s.send('boxes', { a: s.boxes.a, b: s.boxes.b, n: s.n });
  };
  s.svg.addEventListener('pointerup', end);
  s.svg.addEventListener('pointercancel', end);
}
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector('.dlviz-boxes');
  if (!root) {
    root = document.createElement('div'); root.className = 'dlviz-boxes'; root.setAttribute('data-testid', 'dlviz-boxes');
    parentElement.appendChild(root);
    root.__s = { n: 0 };
  }
  const s = root.__s;
  s.send = setTriggerValue;
  if (s.drag) return;  // a rerun during a drag keeps the box under the pointer
  const side = Number(data.side) || 64;
  s.boxes = { a: data.a.slice(), b: data.b.slice() };
  if (s.side !== side || !s.svg) { s.side = side; build(root, s); }
  draw(s);
}
"""


@st.cache_resource
def _element():
    """Register the element once per server."""
    return st.components.v2.component("dlviz.boxes", js=_JS, isolate_styles=False)


def two_boxes(a: list[float], b: list[float], side: int, key: str, on_change) -> None:
    """Mount the two boxes; `on_change` runs before the rerun a finished drag triggers (see the module's docstring)."""
    _element()(data={"a": list(a), "b": list(b), "side": side}, key=key, height=440, on_boxes_change=on_change)
