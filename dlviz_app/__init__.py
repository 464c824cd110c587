"""Streamlit glue shared by app.py and the pages: session state, the sidebar and argument widgets."""
