"""dlviz in the browser: the shared sidebar and the navigation between pages, all over one preset in the session.

`streamlit run app.py` serves this script after warming the server up (app.py, dlviz_app/startup.py); run directly
(`streamlit run streamlit_app.py`, AppTest), it makes what it needs on its first run instead."""

# Streamlit installs this script as the __main__ module of each script run, and multiprocessing re-runs a __main__
# given by path, under the name "__mp_main__", in every process it starts: the forkserver and each training worker.
# They need none of the app, and running it there would build a second Runner (whose start-up marks live runs
# "interrupted").
if __name__ != "__mp_main__":
    import streamlit as st

    from dlviz.data import uploads
    from dlviz.model import budget
    from dlviz_app import runs, session

    budget.return_freed_memory()  # a large computation's memory goes back to the system when it is done

    # The pages live in app_pages/, not pages/: a folder named pages/ next to this script makes Streamlit start in its
    # older multipage mode, which runs a page without this script on the first rerun and drops the first click.
    PAGES = [
        ("app_pages/playground.py", "Playground", ":material/toys:"),
        ("app_pages/build.py", "Build", ":material/construction:"),
        ("app_pages/train.py", "Train", ":material/model_training:"),
        ("app_pages/inspect.py", "Inspect", ":material/visibility:"),
        ("app_pages/vision.py", "Vision", ":material/center_focus_strong:"),
        ("app_pages/landscape.py", "Landscape", ":material/landscape:"),
        ("app_pages/tune.py", "Tune", ":material/tune:"),
    ]

    # an emoji: the browser draws it itself, while a Material icon (this one, or each page's when none is given) is
    # fetched from fonts.gstatic.com by every viewer
    st.set_page_config(page_title="dlviz", page_icon="🧠", layout="wide")
    session.start()
    # Both made once a server, by the start-up under app.py; run without it, by the first page view, so that the
    # Runner's workers warm up while the person reads.
    runs.runner()
    st.cache_resource(uploads.sweep)()  # uploads that aged out while the server was down go (later ones as tables are uploaded)
    session.sidebar()
    # Classroom mode: a lesson's preset may hide pages. Every page stays registered, at the same address, and hidden
    # ones only leave the menu: a link or bookmark to /train must open Train whichever pages the preset hides, and
    # Streamlit serves its default page at the root only (dropping Build would make Train the default and /train a
    # page that does not exist).
    hidden = set(session.hidden("pages"))
    if all(title.lower() in hidden for _, title, _ in PAGES):
        hidden = set()
    pages = [
        # Build stays the page at the root address, which links and bookmarks of every earlier version open
        st.Page(path, title=title, icon=icon, default=title == "Build", visibility="hidden" if title.lower() in hidden else "visible")
        for path, title, icon in PAGES
    ]
    page = st.navigation(pages)
    if page.title.lower() in hidden:  # the root, or an old link to a page this lesson hides: its first page shown
        # the Playground draws only its own kind of network: a lesson opens on its first page of the others
        shown = sorted((p for p in pages if p.title.lower() not in hidden), key=lambda p: p.title == "Playground")
        st.switch_page(shown[0], query_params=st.query_params.to_dict())
    session.keep_in_address()
    session.show_notice()  # a damaged share link or a refused edit, above whichever page is open
    page.run()
    session.keep_in_address()  # an edit made while the page ran
