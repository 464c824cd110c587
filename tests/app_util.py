"""Finding AppTest widgets as a person does: by the label shown on the page, inside the panel it sits in.

Widget keys are the page's internal names (some change with every structural edit); a label is what the page promises.
Import the helpers into a test module: `from app_util import beside, by_label, panel`."""

from streamlit.testing.v1.element_tree import Block


def by_label(widgets, label: str):
    """The one widget of `widgets` (at.selectbox, at.sidebar.button, a panel's number_input, ...) labelled `label`."""
    matches = [w for w in widgets if w.label == label]
    assert len(matches) == 1, f"{len(matches)} widgets labelled {label!r}; the labels here: {[w.label for w in widgets]}"
    return matches[0]


def panel(root, title_start: str):
    """The one expander under `root` whose title starts with `title_start` ('[0] Linear', 'Loss')."""
    matches = [e for e in root.expander if e.label.startswith(title_start)]
    assert len(matches) == 1, f"{len(matches)} panels titled {title_start!r}…; the titles here: {[e.label for e in root.expander]}"
    return matches[0]


def _blocks_around(block: Block, node) -> list[Block]:
    """The containers from `block` down to the one holding `node`, outermost first; empty when `node` is not inside."""
    for child in block.children.values():
        if child is node:
            return [block]
        if isinstance(child, Block):
            inner = _blocks_around(child, node)
            if inner:
                return [block, *inner]
    return []


def beside(root, widget, label: str):
    """The widget labelled `label` that sits nearest `widget`: the only one in the smallest container around `widget`
    that holds any (the Add button next to its 'Add to body' picker, not the one next to 'Add to shortcut')."""
    around = _blocks_around(root, widget)
    assert around, f"{widget.label!r} is not under the given container"
    for block in reversed(around):
        matches = [n for n in block if n is not widget and not isinstance(n, Block) and getattr(n, "label", None) == label]
        if matches:
            assert len(matches) == 1, f"{len(matches)} widgets labelled {label!r} equally near {widget.label!r}"
            return matches[0]
    raise AssertionError(f"no widget labelled {label!r} near {widget.label!r}")


def stored_run(doc: dict, browser: str, folder=None):
    """Train a preset and keep its run, checkpoints included, in the run store of `folder` (the test session's data
    folder by default) under the browser id `browser`, as the Train page would: (run id, the trainer)."""
    from dlviz.paths import data_dir
    from dlviz.preset.schema import validate
    from dlviz.training.store import RunStore, StoreCallback
    from dlviz.training.trainer import Trainer

    exp = validate(doc)
    store = RunStore((folder or data_dir()) / "runs.sqlite")
    run_id = store.create_run(exp, session=browser)
    tr = Trainer(exp, callbacks=[StoreCallback(store, run_id)])
    tr.run()
    store.close()
    return run_id, tr


def open_page(page: str, browser: str, doc: dict | None = None, tabs: dict | None = None, timeout: float = 120):
    """An AppTest of the app opened on `page` ("app_pages/vision.py") under the browser id `browser`, with `doc` as the
    session's preset and the tabs opened that `tabs` names by their keys ({"vision_tab": "Segmentation"}): AppTest cannot
    click a tab, but its key in session state opens it."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "streamlit_app.py"), default_timeout=timeout)
    at.session_state["browser_id"] = browser
    at.run()
    if doc is not None:
        at.session_state["preset"] = doc
    at.switch_page(page).run()
    for key, tab in (tabs or {}).items():
        at.session_state[key] = tab
    if tabs:
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
