"""dlviz in the browser: the shared sidebar and the navigation between pages, all over one preset in the session."""
import streamlit as st

from dlviz_app import session

# The pages live in app_pages/, not pages/: a folder named pages/ next to app.py makes Streamlit start in its
# older multipage mode, which runs a page without this script on the first rerun and drops the first click.
PAGES = [
    st.Page("app_pages/build.py", title="Build", icon=":material/construction:", default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
]

st.set_page_config(page_title="dlviz", page_icon=":material/hub:", layout="wide")
session.start()
session.sidebar()
page = st.navigation(PAGES)
session.show_notice()  # a damaged share link or a refused edit, above whichever page is open
page.run()
