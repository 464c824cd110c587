"""Plotly charts that update in place: the Train page redraws its charts several times a second while a run trains.

`st.plotly_chart` builds a new chart in the browser for every new figure (a full Plotly.newPlot and new DOM each
time), which on a small machine costs more than the redraw rate allows. This element keeps one Plotly graph per key
and hands each new figure to `Plotly.react`, which only redraws what changed. The figures are the plain figure dicts
of dlviz.train_figures (`loss_figure.spec(...)`), the same charts the go.Figure builders give without plotly's
validation; plotly.js is the copy that ships with the plotly Python package, served by this server (nothing is
fetched from elsewhere)."""

from __future__ import annotations

import time
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components_v1
from plotly.io.json import to_json_plotly

# the plotly package's own plotly.js, served by Streamlit's component file route under this name
_ASSETS = "plotlyjs"
_ASSET_DIR = Path(plotly.__file__).resolve().parent / "package_data"

_JS = """
function loadPlotly(src) {
  if (!window.__dlvizPlotly) {
    window.__dlvizPlotly = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = new URL(src, document.baseURI).href;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { window.__dlvizPlotly = null; reject(new Error('plotly.js did not load')); };
      document.head.appendChild(s);
    });
  }
  return window.__dlvizPlotly;
}

export default function (component) {
  const { data, parentElement } = component;
  let gd = parentElement.querySelector('.dlviz-live-chart');
  if (!gd) {
    gd = document.createElement('div');
    gd.className = 'dlviz-live-chart';
    gd.style.width = '100%';
    parentElement.appendChild(gd);
  }
  if (gd.__figure === data.figure) return;  // an unchanged figure: nothing to redraw
  gd.__figure = data.figure;
  gd.style.minHeight = data.height + 'px';
  const fig = JSON.parse(data.figure);
  loadPlotly(data.src).then((Plotly) => {
    if (gd.__figure !== data.figure) return;  // a newer figure arrived while plotly.js loaded
    fig.layout.autosize = true;
    delete fig.layout.width;
    return Plotly.react(gd, fig.data, fig.layout, {displayModeBar: false, responsive: true});
  }).catch((e) => { gd.textContent = 'The chart could not be drawn: ' + e.message; });
}
"""


_WATCH_JS = """
// A live view that stops hearing from the server (a session the server dropped under load, behind a connection
// the browser still thinks open) would wait forever: after `stall` seconds without a beat, reload the page, which
// reconnects and finds this browser's run again. Each redraw of the live view sends a new beat.
export default function (component) {
  const { data } = component;
  window.__dlvizSeen = Date.now();
  window.__dlvizStall = data.stall || 0;
  if (!window.__dlvizWatch) {
    window.__dlvizWatch = setInterval(() => {
      if (window.__dlvizStall && Date.now() - window.__dlvizSeen > window.__dlvizStall * 1000) {
        window.__dlvizStall = 0;
        window.location.reload();
      }
    }, 1000);
  }
}
"""


@st.cache_resource
def _element():
    """Register the elements and the route to plotly.js once per server."""
    served = components_v1.declare_component(_ASSETS, path=str(_ASSET_DIR))
    mount = st.components.v2.component("dlviz.live_chart", js=_JS, isolate_styles=False)
    watch = st.components.v2.component("dlviz.watch", js=_WATCH_JS, isolate_styles=False)
    return served.name, mount, watch


def live_chart(fig: dict, key: str) -> None:
    """Draw the figure dict `fig` under `key`; later calls with the same key update that chart in place."""
    served, mount, _ = _element()
    height = int(fig.get("layout", {}).get("height") or 450)
    # plotly's own encoder, as go.Figure.to_json uses it
    mount(data={"figure": to_json_plotly(fig), "height": height, "src": f"component/{served}/plotly.min.js"}, key=key, height=height)


def watch(stall: float) -> None:
    """A beat from a live view: the browser reloads the page when `stall` seconds pass without one (0: no watch)."""
    _, _, element = _element()
    element(data={"stall": stall, "beat": time.time()}, key="watch", height=0)
