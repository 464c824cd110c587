"""dlviz's server: `streamlit run app.py` serves the pages of streamlit_app.py, warmed up before the first browser connects.

Streamlit finds the module-level `app = st.App(...)` below and runs it under uvicorn, which calls the lifespan
(dlviz_app.startup) before it accepts a connection: torch, the engine, the first page's figures and the training
forkserver are ready when the first person opens the page, instead of loading during their first script run.
`streamlit run streamlit_app.py` serves the same pages without the warm-up."""

import streamlit as st
from starlette.middleware import Middleware

from dlviz_app import frames, startup
from dlviz_app.preload import PreloadMiddleware

startup.check_settings()  # a DLVIZ_* setting the server cannot run with stops it here, in one line
app = st.App(
    "streamlit_app.py",
    lifespan=startup.lifespan,
    routes=frames.routes(),  # the Playground's live frames
    middleware=[Middleware(PreloadMiddleware)],  # the chart's and widgets' scripts asked for with the page
)
