"""The Playground board: features, hidden neurons, weighted edges and the output plane of a small network, in one element.

The board draws in the browser (SVG edges, one <canvas> per heatmap) and redraws from a new frame many times a second
without a Streamlit rerun: while `live` is true it polls `frame_url` itself. Its controls send edits back as events.

Data contract (Python → JS)
---------------------------
`board(state: dict, key: str) -> dict | None` mounts the element with `data=state` and returns the last event dict (or None).
Events go back with `setTriggerValue("edit", payload)`; the Python wrapper returns the payload (a dict) of the event that
triggered this rerun, else None. Each event carries `"n": counter`, so that a repeated event is still a new one.
state = {
  "features": [{"name": "x1", "on": true, "map": B64}, ... 7 entries],
  "hidden": [{"units": 4, "activation": "Tanh"}, ...],   # hidden layers, in order
  "activations": ["Tanh", "ReLU", "Sigmoid", "Linear", ...],  # the choices of the per-layer picker
  "limits": {"units": 8, "layers": 6},
  "extent": 6.0,                                   # the plane is [−extent, extent]² in x1 (horizontal) and x2 (vertical, up)
  "points": {"train": [[x1, x2, label], ...], "test": [[x1, x2, label], ...]},   # label +1 / −1 (regression: the target value)
  "task": "classification" | "regression",
  "show_test": bool, "discretize": bool,
  "live": bool, "frame_url": str | "",
  "frame": FRAME, "height": int (px),
  "dims": 1 | 2,                                   # absent means 2; 1 is the 1-D mode below
  "controls": {"playing": bool, "handled": n | None, "reset_help": str},   # optional: the board draws play/pause, step, reset
  "y_extent": float > 0,                           # 1-D only: the plot's y runs over [−y_extent, y_extent]
}
FRAME = {
  "version": int, "n": 40, "out_n": 80,
  "hidden": [[B64 per unit] per hidden layer],   # each n×n
  "output": B64,                                 # out_n×out_n (may be absent in 1-D mode)
  "curve": [float, ...],                         # 1-D only: out_n predicted y at out_n evenly spaced x from −extent to extent
  "weights": [W0, W1, ...],                      # per Linear layer, nested lists out×in (W0's inputs are the ON features, in state order)
  "biases": [b0, b1, ...],
  "step": int, "epoch": int, "train_loss": float|null, "test_loss": float|null,
  "losses": [[step, train, test], ...],          # ≤ 200 rows, for the sparkline
  "status": "untrained" | "running" | "paused" | "finished" | "stopped" | ...
}
B64 = base64 of an int8 array, row-major, row 0 at the TOP (x2 = +extent), column 0 at the LEFT (x1 = −extent); value v/127
is the map's value clipped to [−1, 1] (dlviz.model.neurons.encode writes it).

1-D mode (dims 1, for y = f(x) + noise): `features` holds one entry {"name": "x", "on": true, "map": B64}, drawn like the
others, and clicking it sends nothing. Hidden maps stay n×n (every row the same: a function of x only). The output panel
is a plot in the same place: x horizontal over [−extent, extent], y up over [−y_extent, y_extent], white, with a light
zero line; the points [x, y, label] are drawn at (x, y) (train blue, white ring; test, with show_test, grey, black ring)
and `frame.curve` as a dark polyline, clipped to the panel; polled frames redraw it. Discretize does nothing there and
no point is marked misclassified.

Events (the payloads `board` returns), all with "n":
  {"kind": "feature", "name": "x1^2", "on": true}             a feature clicked: its new state
  {"kind": "layers", "delta": 1 | -1}                         a hidden layer added / removed
  {"kind": "units", "layer": i, "delta": 1 | -1}              a neuron added to / removed from hidden layer i (0-based)
  {"kind": "activation", "layer": i, "value": "ReLU"}         hidden layer i's activation picked
  {"kind": "weight", "layer": L, "out": j, "in": k, "value": v}   weight [j][k] of Linear layer L (0 = inputs → first hidden)
  {"kind": "point", "x": x1, "y": x2, "label": 1 | -1}        a click on the output plane (shift-click: label -1)
  {"kind": "point", "x": x, "y": y, "label": y}               1-D: a click on the plot, in data coordinates (shift too)
  {"kind": "play" | "step" | "reset"}                         a run control (only with "controls"); the page answers with
                                                              controls.handled = this event's n
The "sync" trigger (a number) says the board has drawn a run control's outcome, so the rest of the page may rerun; it is
a trigger of its own so that an edit sent in the same moment is not replaced by it.

Polling: while `live` is true and `frame_url` is not empty, the board fetches `new URL(frame_url, document.baseURI)` about
every 50 ms with `?v=<version drawn>`, one request at a time: 204 means unchanged, 200 a new FRAME as JSON; any error stops polling until the next
data update. A polled frame whose layer sizes differ from the state's is not drawn (the rerun with the new state will be).

Test ids: the root "dlviz-board"; "neuron-L-J" (hidden layer L, unit J, 0-based); "edge-L-J-K" (Linear layer L, out J,
in K, 0-based, as in the weight event); "board-output"; "board-curve" (1-D: the prediction polyline); "layers-plus", "layers-minus", "units-plus-L", "units-minus-L";
"feature-NAME" (NAME with ^ * ( ) replaced by _); "board-epoch", "board-train-loss", "board-test-loss"; "board-play", "board-step", "board-reset".
`window.__dlvizBoardFrames` counts the frames drawn."""

from __future__ import annotations

import streamlit as st

_JS = r"""
const ORANGE = [245, 147, 34], BLUE = [8, 119, 189];
const MINUS = '\u2212';

function makeLut(discrete) {
  // a colour per int8 value (index v + 128): orange for −1, white at 0, blue for +1
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    let v = Math.max(-1, Math.min(1, (i - 128) / 127));
    if (discrete) v = v >= 0 ? 1 : -1;
    const c = v < 0 ? ORANGE : BLUE, a = Math.abs(v);
    for (let k = 0; k < 3; k++) lut[i * 4 + k] = Math.round(255 + (c[k] - 255) * a);
    lut[i * 4 + 3] = 255;
  }
  return lut;
}
const LUT = makeLut(false), LUT_SIGN = makeLut(true);

function colourOf(v) {
  const i = Math.round(Math.max(-1, Math.min(1, v)) * 127) + 128;
  return `rgb(${LUT[i * 4]},${LUT[i * 4 + 1]},${LUT[i * 4 + 2]})`;
}

function decode(b64) {
  if (!b64 || typeof b64 !== 'string') return null;
  let s;
  try { s = atob(b64); } catch (e) { return null; }
  const a = new Int8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = (s.charCodeAt(i) << 24) >> 24;
  return a;
}

// Put a B64 map into a canvas whose pixels are the map's cells; skipped when the canvas already shows that map.
function putMap(canvas, b64, lut) {
  if (canvas.__b64 === b64 && canvas.__lut === lut) return canvas.__vals;
  const vals = decode(b64);
  canvas.__b64 = b64; canvas.__lut = lut; canvas.__vals = vals;
  const ctx = canvas.getContext('2d');
  if (!vals || !vals.length) { ctx.clearRect(0, 0, canvas.width, canvas.height); return null; }
  const n = Math.round(Math.sqrt(vals.length));
  if (n * n !== vals.length) return null;
  if (canvas.width !== n || canvas.height !== n || !canvas.__img) {
    canvas.width = n; canvas.height = n;
    canvas.__img = ctx.createImageData(n, n);
  }
  const d = canvas.__img.data;
  for (let i = 0; i < vals.length; i++) {
    const o = (vals[i] + 128) * 4, p = i * 4;
    d[p] = lut[o]; d[p + 1] = lut[o + 1]; d[p + 2] = lut[o + 2]; d[p + 3] = 255;
  }
  ctx.putImageData(canvas.__img, 0, 0);
  return vals;
}

function el(tag, cls, parent, attrs) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
const SVGNS = 'http://www.w3.org/2000/svg';
function sel(tag, parent, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function place(e, x, y, w, h) {
  e.style.left = x + 'px'; e.style.top = y + 'px';
  if (w != null) e.style.width = w + 'px';
  if (h != null) e.style.height = h + 'px';
}
const safeName = (s) => String(s).replace(/[\^*()]/g, '_');
const fmt = (v, d) => (v < 0 ? MINUS : '') + Math.abs(v).toFixed(d);
function fmtEpoch(e) {
  const s = String(Math.max(0, Math.floor(e || 0))).padStart(6, '0');
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
const fmtLoss = (v) => (typeof v === 'number' && isFinite(v) ? v.toFixed(3) : '\u2013');

const CSS = `
.dlvb-root { position: relative; width: 100%; overflow: hidden; font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: var(--st-text-color, #333); user-select: none; }
.dlvb-stage { position: absolute; left: 0; top: 0; transform-origin: 0 0; }
.dlvb-stage > * { position: absolute; }
.dlvb-edges { left: 0; top: 0; overflow: visible; }
.dlvb-edges .vis path { fill: none; pointer-events: none; }
.dlvb-edges .hit path { fill: none; stroke: transparent; stroke-width: 8px; pointer-events: stroke; cursor: pointer; }
.dlvb-edges .vis path.hl { stroke-opacity: 1 !important; filter: drop-shadow(0 0 1px #000); }
.dlvb-node { box-sizing: border-box; border: 1px solid #bbb; border-radius: 3px; background: #fff; cursor: default; }
.dlvb-node:hover { border-color: #000; }
.dlvb-feat { display: flex; align-items: center; justify-content: flex-end; gap: 6px; cursor: pointer; font-size: 12px; }
.dlvb-feat canvas { width: 32px; height: 32px; box-sizing: border-box; border: 2px solid #bbb; border-radius: 3px; }
.dlvb-feat.on canvas { border-color: #f59322; }
.dlvb-feat.on span { font-weight: 600; }
.dlvb-feat.off { opacity: 0.35; }
.dlvb-feat:hover { opacity: 1; }
.dlvb-btn { width: 22px; height: 22px; padding: 0; border-radius: 50%; border: 1px solid #999; background: #fff; color: #333;
  font-size: 15px; line-height: 20px; text-align: center; cursor: pointer; }
.dlvb-btn:hover:not(:disabled) { background: #eee; border-color: #333; }
.dlvb-btn:disabled { opacity: 0.3; cursor: default; }
.dlvb-title { font-size: 12px; font-weight: 600; letter-spacing: 0.05em; text-transform: uppercase; color: #555; white-space: nowrap; }
.dlvb-small { font-size: 11px; color: #555; white-space: nowrap; text-align: center; }
.dlvb-sel { font-size: 11px; height: 20px; padding: 0 2px; border: 1px solid #bbb; border-radius: 3px; background: #fff; color: #333; }
.dlvb-out { cursor: crosshair; border: 1px solid #bbb; box-sizing: border-box; }
.dlvb-plot { overflow: hidden; pointer-events: none; }
.dlvb-feat.fixed { cursor: default; }
.dlvb-ctl { box-sizing: border-box; padding: 0; border-radius: 50%; border: 1px solid #999; background: #fff; cursor: pointer; }
.dlvb-ctl svg { display: block; width: 100%; height: 100%; }
.dlvb-ctl:hover { border-color: #333; background: #eee; }
.dlvb-ctl.big { border: none; background: #183d4e; }
.dlvb-ctl.big:hover { background: #0d2530; }
.dlvb-tick { font-size: 10px; color: #666; }
.dlvb-stat { font-size: 13px; white-space: nowrap; }
.dlvb-stat b { font-weight: 600; }
.dlvb-epoch { font-size: 20px; font-weight: 300; letter-spacing: 0.02em; white-space: nowrap; }
.dlvb-float { z-index: 20; pointer-events: none; background: #fff; border: 1px solid #888; border-radius: 4px; padding: 6px;
  box-shadow: 0 2px 8px rgba(0,0,0,0.25); display: none; font-size: 12px; }
.dlvb-float canvas { width: 160px; height: 160px; display: block; }
.dlvb-float div { max-width: 260px; margin-top: 4px; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; white-space: normal; }
.dlvb-tip { z-index: 21; pointer-events: none; background: rgba(20,20,20,0.88); color: #fff; font-size: 12px; padding: 3px 6px;
  border-radius: 3px; white-space: nowrap; display: none; }
.dlvb-editor { z-index: 22; background: #fff; border: 1px solid #888; border-radius: 4px; padding: 4px; display: none;
  box-shadow: 0 2px 8px rgba(0,0,0,0.25); font-size: 11px; }
.dlvb-editor input { width: 90px; font-size: 12px; padding: 2px 4px; border: 1px solid #888; border-radius: 3px; outline: none; }
.dlvb-editor input.bad { border-color: #d00; box-shadow: 0 0 0 2px rgba(220,0,0,0.35); }
.dlvb-editor .msg { color: #d00; margin-top: 2px; display: none; }
`;

const MIN_W = 900;   // narrower containers get the board scaled down rather than squeezed
const TOP = 112;     // where the first neuron row starts, under the controls
const NS = 36;       // hidden neuron size
const FS = 32;       // feature size
const OW = 260;      // output plane size

function emit(b, payload) {
  window.__dlvizBoardN = Math.max((window.__dlvizBoardN || 0) + 1, Date.now());
  payload.n = window.__dlvizBoardN;
  b.send('edit', payload);
}

// the run controls' icons, drawn on a 24×24 grid
const ICONS = {
  play: '<svg viewBox="0 0 24 24"><polygon points="9,6.5 9,17.5 18,12" fill="#fff"/></svg>',
  pause: '<svg viewBox="0 0 24 24"><rect x="7.5" y="7" width="3" height="10" fill="#fff"/><rect x="13.5" y="7" width="3" height="10" fill="#fff"/></svg>',
  step: '<svg viewBox="0 0 24 24"><polygon points="7,7 7,17 14,12" fill="#333"/><rect x="15" y="7" width="2.2" height="10" fill="#333"/></svg>',
  reset: '<svg viewBox="0 0 24 24"><path d="M17.2 9.2 A6 6 0 1 0 18 12" fill="none" stroke="#333" stroke-width="2"/>' +
    '<polygon points="14.2,9.6 19.4,10.6 18.6,5.4" fill="#333"/></svg>',
};

function showPlaying(b) {
  if (!b.playBtn) return;
  b.playBtn.innerHTML = b.playing ? ICONS.pause : ICONS.play;
  b.playBtn.title = b.playing ? 'Pause' : 'Play';
  b.playBtn.setAttribute('aria-label', b.playBtn.title);
}

// A run control goes to the server, which carries it out and reruns the board alone; once the board has drawn the
// outcome (the new run's first frame, or the new state when no frame comes), it asks for the rest of the page with "sync".
function control(b, kind) {
  emit(b, { kind });
  b.awaiting = window.__dlvizBoardN;
}
// the run pauses itself after "one step": its frames say so, and the button follows them unless a click awaits its answer
function follow(b, f) {
  if (b.awaiting || !b.state.controls || (f.status !== 'running' && f.status !== 'paused')) return;
  b.playing = f.status === 'running';
  showPlaying(b);
}
function sync(b) {
  if (!b.syncDue) return;
  b.syncDue = false;
  clearTimeout(b.syncTimer);
  b.send('sync', Math.max((window.__dlvizBoardN || 0) + 1, Date.now()));  // its own trigger: an edit sent with it is not lost
}

function structKey(b) {
  const s = b.state;
  return JSON.stringify([b.LW, b.H, !!s.controls, (s.features || []).map((f) => [f.name, !!f.on]), s.hidden || [], s.activations || [],
    s.limits || {}, s.extent, s.task, Number(s.dims) === 1 ? 1 : 2, s.y_extent]);
}

function build(b) {
  const s = b.state, LW = b.LW, H = b.H;
  const stage = b.stage;
  stage.textContent = '';
  place(stage, 0, 0, LW, H);
  const feats = s.features || [], hidden = s.hidden || [], limits = s.limits || {};
  const nL = hidden.length;
  const maxUnits = Math.max(1, ...hidden.map((h) => h.units || 0));
  const P = Math.min(58, (H - TOP - 8) / maxUnits);
  const Pin = Math.min(50, (H - TOP - 8) / Math.max(1, feats.length));
  const oX = LW - OW - 16, oY = TOP;
  const xIn = 62 + FS, xA = xIn + 36, xB = oX - 36;
  const cw = (xB - xA) / Math.max(1, nL);
  b.lay = { oX, oY };
  b.oneD = Number(s.dims) === 1;

  const svg = sel('svg', stage, { class: 'dlvb-edges', width: LW, height: H });
  const gVis = sel('g', svg, { class: 'vis' }), gHit = sel('g', svg, { class: 'hit' });

  // run controls (when the page gives them to the board)
  b.playBtn = null;
  if (s.controls) {
    const ctl = (id, title, size, x, y, cls) => {
      const btn = el('button', 'dlvb-ctl' + (cls ? ' ' + cls : ''), stage, { 'data-testid': id, title, 'aria-label': title });
      place(btn, x, y, size, size);
      return btn;
    };
    b.playBtn = ctl('board-play', 'Play', 44, 8, 6, 'big');
    b.playBtn.addEventListener('click', () => { b.playing = !b.playing; showPlaying(b); control(b, 'play'); });
    const stp = ctl('board-step', 'One step', 30, 60, 13);
    stp.innerHTML = ICONS.step;
    stp.addEventListener('click', () => control(b, 'step'));
    const rst = ctl('board-reset', s.controls.reset_help || 'Reset', 30, 96, 13);
    rst.innerHTML = ICONS.reset;
    rst.addEventListener('click', () => control(b, 'reset'));
    showPlaying(b);
  }

  // input column
  el('div', 'dlvb-title', stage).textContent = 'Features';
  stage.lastChild.style.left = '14px'; stage.lastChild.style.top = (TOP - 24) + 'px';
  b.feats = [];
  const sources = [];  // the on features, in state order: W0's inputs
  feats.forEach((f, i) => {
    const w = el('div', 'dlvb-feat ' + (f.on ? 'on' : 'off') + (b.oneD ? ' fixed' : ''), stage, { 'data-testid': 'feature-' + safeName(f.name), title: f.name });
    place(w, 0, TOP + i * Pin, xIn, FS);
    el('span', '', w).textContent = f.name;
    const c = el('canvas', '', w, { width: 1, height: 1 });
    if (!b.oneD) w.addEventListener('click', () => emit(b, { kind: 'feature', name: f.name, on: !f.on }));
    w.addEventListener('mouseenter', () => showFloat(b, c, xIn + 6, TOP + i * Pin, f.name));
    w.addEventListener('mouseleave', () => hideFloat(b));
    b.feats.push(c);
    if (f.on) sources.push({ x: xIn, y: TOP + i * Pin + FS / 2, name: f.name });
  });

  // header: the number of hidden layers
  const mid = (xA + xB) / 2;
  const lp = el('button', 'dlvb-btn', stage, { 'data-testid': 'layers-plus', title: 'Add a hidden layer' });
  lp.textContent = '+'; place(lp, mid - 110, 6);
  lp.disabled = nL >= (limits.layers ?? 6);
  lp.addEventListener('click', () => emit(b, { kind: 'layers', delta: 1 }));
  const lm = el('button', 'dlvb-btn', stage, { 'data-testid': 'layers-minus', title: 'Remove the last hidden layer' });
  lm.textContent = MINUS; place(lm, mid - 82, 6);
  lm.disabled = nL <= 0;
  lm.addEventListener('click', () => emit(b, { kind: 'layers', delta: -1 }));
  const lt = el('div', 'dlvb-title', stage); lt.style.fontSize = '14px';
  lt.textContent = `${nL} hidden layer${nL === 1 ? '' : 's'}`; place(lt, mid - 50, 9);

  // hidden columns
  b.neurons = [];
  b.nodePos = [sources];
  hidden.forEach((h, l) => {
    const cx = xA + (l + 0.5) * cw, units = h.units || 0;
    const up = el('button', 'dlvb-btn', stage, { 'data-testid': 'units-plus-' + l, title: 'Add a neuron' });
    up.textContent = '+'; place(up, cx - 25, 40);
    up.disabled = units >= (limits.units ?? 8);
    up.addEventListener('click', () => emit(b, { kind: 'units', layer: l, delta: 1 }));
    const um = el('button', 'dlvb-btn', stage, { 'data-testid': 'units-minus-' + l, title: 'Remove a neuron' });
    um.textContent = MINUS; place(um, cx + 3, 40);
    um.disabled = units <= 1;
    um.addEventListener('click', () => emit(b, { kind: 'units', layer: l, delta: -1 }));
    const cnt = el('div', 'dlvb-small', stage); cnt.textContent = `${units} neuron${units === 1 ? '' : 's'}`;
    place(cnt, cx - cw / 2, 65, cw);
    const pick = el('select', 'dlvb-sel', stage, { 'data-testid': 'activation-' + l, title: 'Activation' });
    const choices = [...(s.activations || [])];
    if (h.activation && !choices.includes(h.activation)) choices.push(h.activation);
    for (const a of choices) { const o = el('option', '', pick); o.value = a; o.textContent = a; }
    pick.value = h.activation || '';
    const pw = Math.min(cw - 6, 86); place(pick, cx - pw / 2, 82, pw);
    pick.addEventListener('change', () => emit(b, { kind: 'activation', layer: l, value: pick.value }));
    const col = [], pos = [];
    for (let j = 0; j < units; j++) {
      const y = TOP + j * P;
      const c = el('canvas', 'dlvb-node', stage, { width: 1, height: 1, 'data-testid': `neuron-${l}-${j}` });
      place(c, cx - NS / 2, y, NS, NS);
      c.addEventListener('mouseenter', () => showFloat(b, c, cx + NS / 2 + 8, y, `layer ${l + 1} neuron ${j + 1}`, l, j));
      c.addEventListener('mouseleave', () => hideFloat(b));
      col.push(c);
      pos.push({ x: cx - NS / 2, xr: cx + NS / 2, y: y + NS / 2, name: `layer ${l + 1} neuron ${j + 1}` });
    }
    b.neurons.push(col);
    b.nodePos.push(pos);
  });

  // edges: Linear layer L joins column L (features for L = 0) to column L + 1 (the output after the last hidden layer)
  b.edges = [];
  const outTarget = [{ x: oX - 2, y: oY + OW / 2, name: 'output' }];
  for (let L = 0; L <= nL; L++) {
    const from = b.nodePos[L], to = L < nL ? b.nodePos[L + 1] : outTarget;
    to.forEach((t, j) => from.forEach((f, k) => {
      const x1 = f.xr ?? f.x, x2 = t.x, mx = (x1 + x2) / 2;
      const d = `M${x1},${f.y} C${mx},${f.y} ${mx},${t.y} ${x2},${t.y}`;
      const vis = sel('path', gVis, { d, 'stroke-opacity': 0.8 });
      const hit = sel('path', gHit, { d, 'data-testid': `edge-${L}-${j}-${k}` });
      const e = { L, j, k, vis, hit, label: `${f.name} \u2192 ${t.name}`, w: null, sw: -1, col: '' };
      hit.__edge = e;
      b.edges.push(e);
    }));
  }
  gHit.addEventListener('mousemove', (ev) => {
    const e = ev.target.__edge; if (!e) return;
    if (b.hl && b.hl !== e.vis) b.hl.classList.remove('hl');
    b.hl = e.vis; e.vis.classList.add('hl');
    const p = local(b, ev);
    b.tip.textContent = `weight ${e.w == null ? '?' : e.w.toFixed(3)} (${e.label})`;
    b.tip.style.display = 'block';
    place(b.tip, Math.min(p.x + 12, LW - b.tip.offsetWidth - 4), p.y + 14);
  });
  gHit.addEventListener('mouseout', () => { b.tip.style.display = 'none'; if (b.hl) b.hl.classList.remove('hl'); b.hl = null; });
  gHit.addEventListener('click', (ev) => { const e = ev.target.__edge; if (e) openEditor(b, e, local(b, ev)); });

  // output plane (1-D: a plot, its curve in an SVG under the canvas, which stays transparent and carries the points)
  const ot = el('div', 'dlvb-title', stage); ot.textContent = 'Output'; place(ot, oX, oY - 24);
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  const Y = Number(s.y_extent) > 0 ? Number(s.y_extent) : 1;
  b.plotFor = null; b.curvePts = null;
  if (b.oneD) {
    const pw = OW - 2;  // the canvas's content box, inside its border
    const plot = sel('svg', stage, { class: 'dlvb-plot', width: pw, height: pw, viewBox: `0 0 ${pw} ${pw}` });
    place(plot, oX + 1, oY + 1);
    sel('rect', plot, { x: 0, y: 0, width: pw, height: pw, fill: '#fff' });
    sel('line', plot, { x1: pw / 2, x2: pw / 2, y1: 0, y2: pw, stroke: '#eee', 'stroke-width': 1 });
    sel('line', plot, { x1: 0, x2: pw, y1: pw / 2, y2: pw / 2, stroke: '#ccc', 'stroke-width': 1 });
    b.curve = sel('polyline', plot, { 'data-testid': 'board-curve', fill: 'none', stroke: '#333', 'stroke-width': 2,
      'stroke-linejoin': 'round', points: '' });
    b.plotW = pw;
  }
  const out = el('canvas', 'dlvb-out', stage, { 'data-testid': 'board-output', width: Math.round(OW * dpr), height: Math.round(OW * dpr) });
  place(out, oX, oY, OW, OW);
  b.out = out; b.outOff = document.createElement('canvas'); b.dpr = dpr;
  out.addEventListener('click', (ev) => {
    const r = out.getBoundingClientRect(), E = Number(s.extent) || 6;
    const fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
    const x = Math.round((-E + 2 * E * fx) * 1000) / 1000;
    if (b.oneD) { const y = Math.round((Y - 2 * Y * fy) * 1000) / 1000; emit(b, { kind: 'point', x, y, label: y }); return; }
    const y = Math.round((E - 2 * E * fy) * 1000) / 1000;
    emit(b, { kind: 'point', x, y, label: ev.shiftKey ? -1 : 1 });
  });
  const E = Number(s.extent) || 6;
  const ticks = [[oX, oY + OW + 2, fmt(-E, 0)], [oX + OW - 14, oY + OW + 2, fmt(E, 0)], [oX + OW + 3, oY + OW - 12, fmt(-E, 0)], [oX + OW + 3, oY, fmt(E, 0)]];
  if (b.oneD) {  // y's ticks go left of the plot: the right margin is too narrow for −y_extent
    const tk = (v) => (v < 0 ? MINUS : '') + String(Math.round(Math.abs(v) * 100) / 100);
    ticks.splice(0, 4, [oX, oY + OW + 2, tk(-E)], [oX + OW - 40, oY + OW + 2, tk(E), 40], [oX - 43, oY + OW - 12, tk(-Y), 40], [oX - 43, oY, tk(Y), 40]);
  }
  for (const [x, y, t, w] of ticks) {
    const d = el('div', 'dlvb-tick', stage); d.textContent = t; place(d, x, y, w);
    if (w) d.style.textAlign = 'right';
  }
  const st1 = el('div', 'dlvb-stat', stage, { 'data-testid': 'board-train-loss' }); place(st1, oX, oY + OW + 18);
  const st2 = el('div', 'dlvb-stat', stage, { 'data-testid': 'board-test-loss' }); place(st2, oX, oY + OW + 36);
  b.trainText = st1; b.testText = st2;
  const spark = sel('svg', stage, { width: OW, height: 40 });
  spark.style.left = oX + 'px'; spark.style.top = (oY + OW + 58) + 'px'; spark.style.position = 'absolute';
  b.sparkTest = sel('polyline', spark, { fill: 'none', stroke: '#aaa', 'stroke-width': 1.5 });
  b.sparkTrain = sel('polyline', spark, { fill: 'none', stroke: '#333', 'stroke-width': 1.5 });
  const ep = el('div', 'dlvb-epoch', stage); place(ep, oX, oY + OW + 102);
  el('span', 'dlvb-small', ep).textContent = 'Epoch ';
  b.epoch = el('span', '', ep, { 'data-testid': 'board-epoch' });
  b.statusText = el('span', 'dlvb-small', ep); b.statusText.style.marginLeft = '8px';

  // floating pieces
  b.float = el('div', 'dlvb-float', stage);
  b.floatCanvas = el('canvas', '', b.float, { width: 1, height: 1 });
  b.floatText = el('div', '', b.float);
  b.tip = el('div', 'dlvb-tip', stage);
  b.editor = el('div', 'dlvb-editor', stage);
  b.editorInput = el('input', '', b.editor, { type: 'text', inputmode: 'decimal', 'data-testid': 'board-weight-input' });
  b.editorMsg = el('div', 'msg', b.editor); b.editorMsg.textContent = 'enter a finite number';
  b.editorInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') { closeEditor(b); return; }
    if (ev.key !== 'Enter') return;
    ev.preventDefault();
    const t = b.editorInput.value.trim(), v = Number(t);
    if (t === '' || !Number.isFinite(v)) {
      b.editorInput.classList.add('bad'); b.editorMsg.style.display = 'block';
      return;
    }
    const e = b.editing;
    closeEditor(b);
    if (e) emit(b, { kind: 'weight', layer: e.L, out: e.j, in: e.k, value: v });
  });
  b.editorInput.addEventListener('input', () => { b.editorInput.classList.remove('bad'); b.editorMsg.style.display = 'none'; });
  b.editorInput.addEventListener('blur', () => setTimeout(() => { if (document.activeElement !== b.editorInput) closeEditor(b); }, 150));
  b.hovered = null;
}

function local(b, ev) {
  const r = b.stage.getBoundingClientRect();
  return { x: (ev.clientX - r.left) / b.scale, y: (ev.clientY - r.top) / b.scale };
}

function openEditor(b, e, p) {
  b.editing = e;
  b.editorInput.value = e.w == null ? '' : String(Math.round(e.w * 1000) / 1000);
  b.editorInput.classList.remove('bad'); b.editorMsg.style.display = 'none';
  b.editor.style.display = 'block';
  place(b.editor, Math.min(p.x, b.LW - 110), Math.min(p.y, b.H - 50));
  b.editorInput.focus(); b.editorInput.select();
}
function closeEditor(b) { b.editing = null; if (b.editor) b.editor.style.display = 'none'; }

function formula(b, l, j) {
  const f = b.frame, W = f && f.weights && f.weights[l], bias = f && f.biases && f.biases[l];
  if (!W || !W[j]) return '';
  const names = l === 0 ? (b.state.features || []).filter((x) => x.on).map((x) => x.name) : W[j].map((_, k) => `h${l},${k + 1}`);
  let z = 'z = ';
  W[j].forEach((w, k) => {
    const term = Math.abs(w).toFixed(2) + '\u00b7' + (names[k] ?? `in${k + 1}`);
    z += k === 0 ? (w < 0 ? MINUS : '') + term : (w < 0 ? ` ${MINUS} ` : ' + ') + term;
  });
  const bj = bias && typeof bias[j] === 'number' ? bias[j] : 0;
  z += (W[j].length ? (bj < 0 ? ` ${MINUS} ` : ' + ') : (bj < 0 ? MINUS : '')) + Math.abs(bj).toFixed(2);
  const act = ((b.state.hidden || [])[l] || {}).activation || '';
  const outs = { tanh: 'tanh(z)', relu: 'max(0, z)', sigmoid: '\u03c3(z)', linear: 'z', identity: 'z' };
  const o = outs[act.toLowerCase()] || `${act.toLowerCase() || 'f'}(z)`;
  return `${z}<br>out = ${o}`;
}

function showFloat(b, canvas, x, y, title, l, j) {
  b.hovered = { canvas, title, l, j };
  b.float.style.display = 'block';
  refreshFloat(b);
  const w = b.float.offsetWidth, h = b.float.offsetHeight;
  place(b.float, x + w > b.LW ? x - w - NS - 16 : x, Math.max(0, Math.min(y, b.H - h - 4)));
}
function hideFloat(b) { b.hovered = null; if (b.float) b.float.style.display = 'none'; }
function refreshFloat(b) {
  const h = b.hovered; if (!h) return;
  const src = h.canvas, fc = b.floatCanvas;
  if (fc.width !== src.width || fc.height !== src.height) { fc.width = src.width; fc.height = src.height; }
  fc.getContext('2d').drawImage(src, 0, 0);
  b.floatText.innerHTML = `<b>${h.title}</b>` + (h.l != null ? '<br>' + formula(b, h.l, h.j) : '');
}

// whether a frame fits the board's current layer sizes (a polled frame may come from a model the page has not shown yet)
function fits(b, f) {
  const hidden = b.state.hidden || [];
  if (!f || !Array.isArray(f.weights) || f.weights.length !== hidden.length + 1) return false;
  for (let l = 0; l < hidden.length; l++) if ((f.weights[l] || []).length !== hidden[l].units) return false;
  const nOn = (b.state.features || []).filter((x) => x.on).length;
  return !f.weights[0] || !f.weights[0][0] || f.weights[0][0].length === nOn;
}

function drawFeatures(b) {
  (b.state.features || []).forEach((f, i) => { if (b.feats[i]) putMap(b.feats[i], f.map, LUT); });
}

// 2-D: the output heatmap and the points on it
function drawPlane(b, f) {
  const s = b.state;
  const ctx = b.out.getContext('2d'), size = b.out.width;
  const vals = putMap(b.outOff, f.output, s.discretize ? LUT_SIGN : LUT);
  ctx.imageSmoothingEnabled = true;
  if (vals) ctx.drawImage(b.outOff, 0, 0, size, size);
  else { ctx.fillStyle = '#f3f3f3'; ctx.fillRect(0, 0, size, size); }
  const E = Number(s.extent) || 6, on = vals ? Math.round(Math.sqrt(vals.length)) : 0;
  const cls = s.task !== 'regression';
  const pts = s.points || {};
  const r = 3.2 * b.dpr;
  const dot = (p, ring) => {
    const x = (p[0] + E) / (2 * E) * size, y = (E - p[1]) / (2 * E) * size;
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = cls ? (p[2] >= 0 ? '#0877bd' : '#f59322') : colourOf(p[2]);
    ctx.fill(); ctx.lineWidth = b.dpr; ctx.strokeStyle = ring; ctx.stroke();
    if (cls && vals) {
      const col = Math.min(on - 1, Math.max(0, Math.floor((p[0] + E) / (2 * E) * on)));
      const row = Math.min(on - 1, Math.max(0, Math.floor((E - p[1]) / (2 * E) * on)));
      if ((vals[row * on + col] >= 0 ? 1 : -1) !== (p[2] >= 0 ? 1 : -1)) {
        ctx.beginPath(); ctx.arc(x, y, r + 2.5 * b.dpr, 0, 2 * Math.PI);
        ctx.strokeStyle = '#e00'; ctx.lineWidth = 1.5 * b.dpr; ctx.stroke();
      }
    }
  };
  for (const p of pts.train || []) dot(p, '#fff');
  if (s.show_test) for (const p of pts.test || []) dot(p, '#000');
}

// 1-D: the prediction curve (one attribute per frame) and, when the state is new, the points
function drawPlot(b, f) {
  const s = b.state, E = Number(s.extent) || 6, Y = Number(s.y_extent) > 0 ? Number(s.y_extent) : 1, pw = b.plotW;
  const c = Array.isArray(f.curve) ? f.curve : [], m = c.length, xy = [];
  for (let i = 0; i < m; i++) {
    const v = c[i];
    if (typeof v !== 'number' || !isFinite(v)) continue;
    const y = Math.max(-10 * pw, Math.min(11 * pw, (Y - v) / (2 * Y) * pw));
    xy.push(`${(m > 1 ? i / (m - 1) * pw : pw / 2).toFixed(1)},${y.toFixed(1)}`);
  }
  const pts = xy.join(' ');
  if (pts !== b.curvePts) { b.curve.setAttribute('points', pts); b.curvePts = pts; }
  if (b.plotFor === s) return;
  b.plotFor = s;
  const ctx = b.out.getContext('2d'), size = b.out.width, r = 3.2 * b.dpr;
  ctx.clearRect(0, 0, size, size);
  const dot = (p, fill, ring) => {
    if (!Array.isArray(p) || typeof p[0] !== 'number' || typeof p[1] !== 'number') return;
    const x = (p[0] + E) / (2 * E) * size, y = (Y - p[1]) / (2 * Y) * size;
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = fill; ctx.fill(); ctx.lineWidth = b.dpr; ctx.strokeStyle = ring; ctx.stroke();
  };
  const pts0 = s.points || {};
  for (const p of pts0.train || []) dot(p, '#0877bd', '#fff');
  if (s.show_test) for (const p of pts0.test || []) dot(p, '#9e9e9e', '#000');
}

function draw(b, f) {
  const s = b.state;
  f = f || {};
  b.frame = f;
  b.drawnVersion = f.version;
  (b.neurons || []).forEach((col, l) => col.forEach((c, j) => putMap(c, ((f.hidden || [])[l] || [])[j], LUT)));
  for (const e of b.edges || []) {
    const w = (((f.weights || [])[e.L] || [])[e.j] || [])[e.k];
    if (typeof w !== 'number') { e.w = null; if (e.sw !== 0) { e.vis.setAttribute('stroke', 'none'); e.sw = 0; } continue; }
    e.w = w;
    const sw = Math.round(Math.min(5, Math.max(0.4, Math.abs(w) * 2.5)) * 10) / 10;
    const col = w < 0 ? '#f59322' : '#0877bd';
    if (sw !== e.sw) { e.vis.setAttribute('stroke-width', sw); e.sw = sw; }
    if (col !== e.col) { e.vis.setAttribute('stroke', col); e.col = col; }
  }
  if (b.oneD) drawPlot(b, f);
  else drawPlane(b, f);
  // numbers and sparkline
  b.trainText.innerHTML = `Training loss <b>${fmtLoss(f.train_loss)}</b>`;
  b.testText.innerHTML = `Test loss <b>${fmtLoss(f.test_loss)}</b>`;
  b.epoch.textContent = fmtEpoch(f.epoch);
  b.statusText.textContent = f.status || '';
  const rows = (f.losses || []).filter((row) => Array.isArray(row));
  let hi = 0, s0 = Infinity, s1 = -Infinity;
  for (const row of rows) {
    s0 = Math.min(s0, row[0]); s1 = Math.max(s1, row[0]);
    for (const v of [row[1], row[2]]) if (typeof v === 'number' && isFinite(v)) hi = Math.max(hi, v);
  }
  const line = (idx) => rows.filter((row) => typeof row[idx] === 'number' && isFinite(row[idx]))
    .map((row) => `${((row[0] - s0) / Math.max(1e-9, s1 - s0) * (OW - 2) + 1).toFixed(1)},${(38 - row[idx] / (hi || 1) * 36).toFixed(1)}`).join(' ');
  b.sparkTrain.setAttribute('points', line(1));
  b.sparkTest.setAttribute('points', s.show_test === false ? '' : line(2));
  refreshFloat(b);
  window.__dlvizBoardFrames = (window.__dlvizBoardFrames || 0) + 1;
}

function poll(b) {
  if (b.timer || !b.live || !b.url || b.pollFailed) return;
  const tick = () => {
    if (!b.root.isConnected || !b.live || !b.url || b.pollFailed) { clearInterval(b.timer); b.timer = null; return; }
    if (b.inflight) return;
    b.inflight = true;
    const url = b.url;
    fetch(new URL(url + '?v=' + encodeURIComponent(b.drawnVersion), document.baseURI), { cache: 'no-store' })
      .then((r) => { if (r.status === 204) return null; if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then((f) => { if (f && url === b.url && f.version !== b.drawnVersion && fits(b, f)) { draw(b, f); follow(b, f); sync(b); } })
      .catch(() => { b.pollFailed = true; })
      .finally(() => { b.inflight = false; });
  };
  b.timer = setInterval(tick, 50);  // faster than the worker sends frames (every 60 ms at most), so that none is skipped
  tick();  // the first at once: a run just started has its first frame ready
}

function relayout(b) {
  const W = b.root.clientWidth || MIN_W;
  b.LW = Math.max(W, MIN_W);
  b.scale = W / b.LW;
  b.stage.style.transform = b.scale < 1 ? `scale(${b.scale})` : '';
  b.root.style.height = Math.ceil(b.H * b.scale) + 'px';
  const key = structKey(b);
  if (key !== b.key) { b.key = key; closeEditor(b); build(b); drawFeatures(b); draw(b, b.frame); }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector('.dlvb-root');
  if (!root) {
    root = el('div', 'dlvb-root', parentElement, { 'data-testid': 'dlviz-board' });
    el('style', '', root).textContent = CSS;
    const stage = el('div', 'dlvb-stage', root);
    root.__board = { root, stage, key: null, frame: null, scale: 1 };
    root.__board.redraw = (f) => draw(root.__board, f);  // for timing the redraw from a test
    const ro = new ResizeObserver(() => { const b = root.__board; if (b.state) relayout(b); });
    ro.observe(root);
  }
  const b = root.__board;
  b.send = setTriggerValue;
  b.state = data || {};
  b.H = Number(b.state.height) || 600;
  // a data frame is drawn when it is new to the page: newer than the frame drawn, or a restarted count (a rebuilt model)
  const f = b.state.frame || null, dv = f ? f.version : undefined;
  let frame = b.frame;
  if (b.dataVersion === undefined || dv !== b.dataVersion) {
    if (b.dataVersion === undefined || dv === undefined || b.drawnVersion === undefined || dv < b.dataVersion || dv >= b.drawnVersion) frame = f;
  }
  if (!fits(b, frame)) frame = f;
  b.dataVersion = dv;
  b.frame = frame;
  const c = b.state.controls;
  if (c && (!b.awaiting || c.handled === b.awaiting)) b.playing = !!c.playing;  // an older rerun keeps the clicked state
  if (c && b.awaiting && c.handled === b.awaiting) {
    b.awaiting = null;
    b.syncDue = true;  // after the first new frame, or at the latest in 250 ms
    clearTimeout(b.syncTimer);
    b.syncTimer = setTimeout(() => sync(b), 250);
  }
  const oldKey = b.key;
  relayout(b);
  if (b.key === oldKey) { drawFeatures(b); draw(b, frame); }
  showPlaying(b);
  // polling restarts with every data update, also after an error
  b.live = !!b.state.live;
  const url = typeof b.state.frame_url === 'string' ? b.state.frame_url : '';
  b.url = url;
  b.pollFailed = false;
  poll(b);
}
"""


@st.cache_resource
def _element():
    """Register the element once per server."""
    return st.components.v2.component("dlviz.board", js=_JS, isolate_styles=False)


def board(state: dict, key: str, on_event=None) -> dict | None:
    """Mount the board with `data=state`; the event dict that triggered this rerun, else None, and {"kind": "sync"} when
    the board asked for the page after a run control. `on_event`, a callback, runs before the rerun an edit triggers and
    finds the edit in `st.session_state[key]["edit"]`."""
    mount = _element()
    result = mount(data=state, key=key, height=int(state.get("height") or 600), on_edit_change=on_event or (lambda: None), on_sync_change=lambda: None)
    event = result.get("edit") if result is not None else None
    if result is not None and result.get("sync"):
        return {"kind": "sync"}
    return event if isinstance(event, dict) else None
