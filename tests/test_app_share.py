"""Share links and classroom mode in the app: a link restores the experiment, a lesson can hide pages and controls."""

from pathlib import Path

import pytest
from app_util import by_label
from streamlit.testing.v1 import AppTest

from dlviz.errors import UserError
from dlviz.preset import gallery, share
from dlviz.preset.schema import validate
from dlviz.training import addresses
from dlviz_app import session

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def open_with(doc):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = share.encode(validate(doc))
    return at.run()


def open_share_box(at: AppTest) -> AppTest:
    """Open the sidebar's "Copy share link" popover, which is filled only while open."""
    assert not at.code  # closed, it holds nothing
    at.session_state[session.SHARE_OPEN] = True
    return at.run()


def test_the_sidebar_shows_a_link_that_opens_the_same_experiment():
    doc = gallery.raw("xor")
    at = open_with(doc)
    assert not at.exception
    assert at.session_state["preset"] == validate(doc).to_dict()
    link = next(c.value for c in open_share_box(at).code if "?preset=" in c.value)
    assert share.decode_link(link) == validate(doc)


def test_classroom_mode_hides_pages_and_controls():
    doc = gallery.raw("vanishing-sigmoid")
    doc["classroom"] = {"hide_pages": ["build", "landscape"], "hide_controls": ["optimizer", "gallery"]}
    at = open_with(doc)
    assert not at.exception
    assert not [s for s in at.sidebar.selectbox if s.label == "Gallery"]
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    labels = {e.label for e in at.expander}
    assert "Optimizer" not in labels and "Loss" in labels


def test_unknown_classroom_names_are_refused_with_a_suggestion():
    doc = gallery.raw("xor")
    doc["classroom"] = {"hide_pages": ["trian"]}
    with pytest.raises(UserError, match=r"classroom.hide_pages\[0\].*did you mean 'train'"):
        validate(doc)


def test_a_damaged_link_opens_the_default_preset_with_one_sentence():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = share.encode(validate(gallery.raw("xor")))[:-12]
    at.run()
    assert not at.exception
    assert at.session_state["preset"] == gallery.raw(gallery.DEFAULT)
    assert any("damaged or cut short" in e.value for e in at.error)


def test_a_link_in_an_older_format_opens_migrated(monkeypatch):
    """A link made by an older dlviz (its own format name and key) opens as the current preset, in the app too.

    dlviz has one format so far; this registers a previous one as a future format change would, and checks the
    whole path a link takes: decode, migrate, validate, open."""
    import base64
    import json
    import zlib

    from dlviz.preset import schema as spec

    def from_v0(doc):  # the shape of a migration: rename, then restamp
        doc = dict(doc)
        doc["optimizer"] = doc.pop("optimiser")
        return {**doc, "format": spec.FORMAT}

    monkeypatch.setitem(spec.MIGRATIONS, "dlviz-preset/0", from_v0)
    doc0 = {**gallery.raw("xor"), "format": "dlviz-preset/0"}
    doc0["optimiser"] = doc0.pop("optimizer")
    token = base64.urlsafe_b64encode(zlib.compress(json.dumps(doc0).encode())).decode().rstrip("=")
    assert share.decode(token) == validate(gallery.raw("xor"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = token
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["preset"] == validate(gallery.raw("xor")).to_dict()
    # without the migration, the same link is refused with one sentence naming the format
    monkeypatch.delitem(spec.MIGRATIONS, "dlviz-preset/0")
    with pytest.raises(UserError, match=r"unknown (format|key)"):
        share.decode(token)


def address_preset(at) -> dict:
    """The preset the app's address would reopen."""
    params = at.query_params
    if params.get(share.ID_PARAM):
        return addresses.kept(params[share.ID_PARAM][0] if isinstance(params[share.ID_PARAM], list) else params[share.ID_PARAM]).to_dict()
    token = params[share.PARAM]
    return share.decode(token[0] if isinstance(token, list) else token).to_dict()


def test_the_address_carries_the_preset_after_a_gallery_load_an_edit_and_a_page_switch():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert address_preset(at) == validate(gallery.raw(gallery.DEFAULT)).to_dict()
    by_label(at.sidebar.selectbox, "Gallery").set_value("xor")
    by_label(at.sidebar.button, "Load").click().run()
    assert address_preset(at) == validate(gallery.raw("xor")).to_dict()
    by_label(at.button, "New empty model").click().run()
    assert address_preset(at) == validate(at.session_state["preset"]).to_dict()
    assert not address_preset(at)["model"].get("layers")
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert not address_preset(at)["model"].get("layers")
    # a fresh session on that address (a reload) opens the same preset
    again = AppTest.from_file(APP, default_timeout=60)
    for name, value in at.query_params.items():
        again.query_params[name] = value[0] if isinstance(value, list) else value
    again.run()
    assert again.session_state["preset"] == at.session_state["preset"] or validate(again.session_state["preset"]) == validate(at.session_state["preset"])


def long_preset() -> dict:
    import random

    rng = random.Random(0)  # sizes that do not repeat, so the token does not compress below 2,000 characters
    doc = gallery.raw("xor")
    doc["model"]["layers"] = [{"type": "Linear", "out_features": rng.randint(2, 99)} for _ in range(900)]
    doc["model"]["layers"].append({"type": "Linear", "out_features": 2})
    return doc


def test_a_preset_too_long_for_an_address_is_kept_on_the_server_under_a_short_id():
    doc = long_preset()
    assert len(share.encode(validate(doc))) > share.SAFE_LINK_CHARS
    param, pid = addresses.address_state(validate(doc))
    assert param == share.ID_PARAM and len(pid) == 20
    assert addresses.kept(pid) == validate(doc)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.ID_PARAM] = pid
    at.run()
    assert not at.exception and not at.error
    assert validate(at.session_state["preset"]) == validate(doc)
    assert share.PARAM not in at.query_params
    # the share box offers the short address beside the long link
    short = [c.value for c in open_share_box(at).code if f"?{share.ID_PARAM}=" in c.value]
    assert short and short[0].endswith(f"?{share.ID_PARAM}={pid}")


@pytest.mark.parametrize("pid", ["0123456789abcdef0123", "../../etc/passwd", "x" * 5000, ""])
def test_an_unknown_or_malformed_id_gets_one_sentence(pid):
    with pytest.raises(UserError, match="this server does not have"):
        addresses.kept(pid)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.ID_PARAM] = pid
    at.run()
    assert not at.exception
    if pid:
        assert [e.value for e in at.error] == ["share.saved: this address names a saved experiment this server does not have; ask for the preset file"]


def test_a_classroom_link_to_a_page_opens_it_and_the_root_opens_the_first_page_shown():
    doc = gallery.raw("vanishing-sigmoid")
    doc["classroom"] = {"hide_pages": ["build", "landscape"]}
    token = share.encode(validate(doc))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = token
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert at.title[0].value == "Train"
    root = AppTest.from_file(APP, default_timeout=60)
    root.query_params[share.PARAM] = token
    root.run()
    assert not root.exception
    assert root.title[0].value == "Train"
    assert validate(root.session_state["preset"]) == validate(doc)
    # every page stays registered at its own address, so an older link to a page the lesson hides opens its first page
    old = AppTest.from_file(APP, default_timeout=60)
    old.query_params[share.PARAM] = token
    old.switch_page("app_pages/build.py").run()
    assert not old.exception
    assert old.title[0].value == "Train"


def _kept_ids(url: str) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT id FROM kept_presets"))}
    engine.dispose()
    return ids


def _as_url(store_url: str) -> str:
    return store_url if "://" in store_url else f"sqlite:///{store_url}"


def test_kept_presets_stay_within_their_byte_budget(monkeypatch, store_url, tmp_path):
    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DLVIZ_DATABASE_URL", _as_url(store_url))
    doc = long_preset()
    size = len(share.canonical_json(validate(doc)).encode())
    monkeypatch.setenv("DLVIZ_KEPT_PRESETS_BYTES", str(3 * size + size // 2))
    ids = []
    for n in range(6):
        doc["name"] = f"edit {n}"
        ids.append(addresses.keep(validate(doc)))
        if n == 3:
            assert addresses.kept(ids[1])  # opened: now the most recently used of the first four
    assert _kept_ids(_as_url(store_url)) == {ids[1], ids[4], ids[5]}
    with pytest.raises(UserError, match="this server does not have"):
        addresses.kept(ids[0])
    assert not (tmp_path / "presets").exists()  # nothing of it in the data directory


def test_a_short_address_made_on_one_replica_opens_on_another(monkeypatch, store_url, tmp_path):
    """Replicas behind a proxy share the run store's database, not their data directories: a browser that moves to
    another replica (its own died, or a link shared with a classmate) still opens a long preset's short address."""
    monkeypatch.setenv("DLVIZ_DATABASE_URL", _as_url(store_url))
    doc = long_preset()
    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path / "a"))
    param, pid = addresses.address_state(validate(doc))
    assert param == share.ID_PARAM
    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path / "b"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.ID_PARAM] = pid
    at.run()
    assert not at.exception and not at.error
    assert validate(at.session_state["preset"]) == validate(doc)


def test_a_preset_an_older_version_kept_as_a_file_still_opens_and_moves_into_the_store(monkeypatch, tmp_path):
    import hashlib

    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path))
    text = share.canonical_json(validate(long_preset()))
    pid = hashlib.sha256(text.encode()).hexdigest()[:20]
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / f"{pid}.json").write_text(text)
    assert addresses.kept(pid) == validate(long_preset())
    assert not (tmp_path / "presets" / f"{pid}.json").exists()
    assert pid in _kept_ids(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    assert addresses.kept(pid) == validate(long_preset())  # from the store now


def test_a_run_store_that_cannot_be_reached_is_one_sentence_and_the_page_stays_up(monkeypatch, tmp_path):
    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DLVIZ_DATABASE_URL", "postgresql://dlviz:s3cret@127.0.0.1:9/nowhere")
    with pytest.raises(UserError) as err:
        addresses.keep(validate(long_preset()))
    message = str(err.value)
    assert message.startswith("share.saved: The preset could not be kept or read for its short address: ")
    assert "s3cret" not in message and "\n" not in message and "Traceback" not in message
    with pytest.raises(UserError, match="could not be kept or read"):
        addresses.kept("0123456789abcdef0123")
    # the page opens the long preset, leaves its address as it came, and its share box says why there is no short one
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = share.encode(validate(long_preset()))
    at.run()
    assert not at.exception and not at.error
    assert validate(at.session_state["preset"]) == validate(long_preset())
    assert [c.value for c in open_share_box(at).caption if c.value.startswith("share.saved:")] == [message]


def test_the_address_follows_an_uploaded_preset_and_is_worked_out_only_when_the_preset_changes(monkeypatch):
    import json

    calls = []
    real = addresses.address_state
    monkeypatch.setattr(addresses, "address_state", lambda exp: calls.append(exp) or real(exp))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.run()
    assert len(calls) == 1  # a rerun without an edit leaves the address alone
    xor = gallery.raw("xor")
    by_label(at.sidebar.file_uploader, "Open a preset file").set_value(("xor.json", json.dumps(xor).encode(), "application/json")).run()
    assert not at.exception
    assert address_preset(at) == validate(xor).to_dict()
