"""dlviz in the browser: the shared sidebar and the navigation between pages, all over one preset in the session."""

# Streamlit installs this script as the server's __main__ module, and multiprocessing re-runs a __main__ given by path,
# under the name "__mp_main__", in every process it starts: the forkserver and each training worker. They need none
# of the app, and running it there would build a second Runner (whose start-up marks live runs "interrupted").
if __name__ != "__mp_main__":
    import streamlit as st

    from dlviz import uploads
    from dlviz_app import runs, session

    # The pages live in app_pages/, not pages/: a folder named pages/ next to app.py makes Streamlit start in its
    # older multipage mode, which runs a page without this script on the first rerun and drops the first click.
    PAGES = [
        st.Page("app_pages/build.py", title="Build", icon=":material/construction:", default=True),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/inspect.py", title="Inspect", icon=":material/visibility:"),
        st.Page("app_pages/landscape.py", title="Landscape", icon=":material/landscape:"),
    ]

    # an emoji: the browser draws it itself, while a Material icon (this one, or each page's when none is given) is
    # fetched from fonts.gstatic.com by every viewer
    st.set_page_config(page_title="dlviz", page_icon="🧠", layout="wide")
    session.start()
    runs.runner()  # created with the first page view of the server, so its workers warm up while the person reads
    st.cache_resource(uploads.sweep)()  # once a server: uploads that aged out while it was down go (later ones as tables are uploaded)
    session.sidebar()
    # classroom mode: a lesson's preset may hide pages (the first page left becomes the default)
    hidden = set(session.hidden("pages"))
    shown = [p for p in PAGES if p.title.lower() not in hidden] or PAGES
    page = st.navigation(shown)
    session.show_notice()  # a damaged share link or a refused edit, above whichever page is open
    page.run()
