"""A share link whose data.source is a file on the server, opened in the app: every page that reads the data says the
table is not an upload of this server, and shows neither the file's columns nor any server path."""

from pathlib import Path

import pytest
from app_util import by_label
from streamlit.testing.v1 import AppTest

from dlviz.paths import data_dir
from dlviz.preset import share
from dlviz.preset.schema import validate

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
REFUSED = "is not a table uploaded to this server"


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("server-files")
    path = folder / "secret.csv"
    path.write_text("api_key,password,user\n" + "".join(f"{1000 + i},{i * 7 % 13},{i % 2}\n" for i in range(30)))
    return path


def link_to(secret: Path, target: str) -> str:
    doc = {
        "format": "dlviz-preset/1",
        "name": "innocent",
        "seed": 0,
        "data": {"name": "csv", "source": str(secret), "target": target},
        "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 8}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}]},
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 1},
    }
    return share.encode(validate(doc))


def shown(at) -> str:
    """Every text the page shows, options of its select boxes included."""
    parts = [e.value for kind in ("markdown", "caption", "info", "error", "warning", "success", "text", "code") for e in getattr(at, kind)]
    parts += [str(o) for s in at.selectbox for o in s.options]
    return "\n".join(str(p) for p in parts)


def check(at, secret: Path) -> None:
    assert not at.exception, [e.value for e in at.exception]
    text = shown(at)
    assert REFUSED in text, text[-2000:]
    for leak in ("api_key", "password", str(secret.parent), str(data_dir())):
        assert leak not in text, leak


@pytest.mark.parametrize("target", ["user", "no-such-column"])
def test_train_inspect_and_landscape_read_nothing_outside_the_uploads(secret, target):
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params[share.PARAM] = link_to(secret, target)
    at.session_state["browser_id"] = "secret-source"
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    at.switch_page("app_pages/train.py").run()
    check(at, secret)
    by_label(at.button, "Train").click().run()  # the Train button reads the data too
    check(at, secret)

    at.switch_page("app_pages/inspect.py").run()  # its first input is a sample of the dataset
    check(at, secret)

    at.switch_page("app_pages/landscape.py").run()
    at.session_state["ls_tab"] = "Your network's loss surface"
    at.run()
    check(at, secret)
