"""Hostile uploads in headless Chromium: a pixel-heavy PNG, a PostScript loop, garbage named .png, a CSV with a 15 MB
cell and a non-UTF-8 CSV go through the Inspect and Train uploaders. Each gives one sentence and no traceback, no
Ghostscript starts, and the server's memory stays bounded."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, server_pid, settle  # noqa: F401  (pytest fixtures)
from PIL import Image

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate

pytestmark = pytest.mark.browser

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"
# A 5,000×5,000 colour upload cost ~300 MB of float32 pixels in a cache every session shared; shrunk to 1,024 pixels
# a side it costs ~12 MB. The whole corpus may not grow the server by more than a few such pictures.
MAX_GROWTH = 250_000_000
MAX_PAGE_CHARS = 200_000  # a 15 MB cell quoted whole would be 15 M characters


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    side = 5_000
    ramp = np.linspace(0, 255, side).astype(np.uint8)
    rgb = np.stack([np.broadcast_to(ramp[None, :], (side, side)), np.broadcast_to(ramp[:, None], (side, side)), np.full((side, side), 128, np.uint8)], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    (folder / "huge.png").write_bytes(buf.getvalue())
    (folder / "loop.eps").write_bytes(EPS)
    (folder / "loop-renamed.png").write_bytes(EPS)
    (folder / "garbage.png").write_bytes(np.random.default_rng(0).bytes(5_000))
    rows = [f"{i},{i % 2}" for i in range(40)]
    rows[7] = "x" * 15_000_000 + ",1"
    (folder / "cell.csv").write_text("a,y\n" + "\n".join(rows) + "\n")
    (folder / "latin1.csv").write_bytes("café,y\n1,0\n2,1\n".encode("latin-1"))
    return folder

    raise AssertionError("server process not found")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ghostscripts() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = open(f"/proc/{entry}/comm").read().strip()
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")[0]
            except OSError:
                continue
            if comm in ("gs", "ghostscript") or os.path.basename(cmd) in (b"gs", b"ghostscript"):
                found.append(int(entry))
    return found


def upload(pg, path: Path, label: str, expect: str) -> str:
    """Give `path` to the file uploader labelled `label`; returns the page's text once it shows `expect`."""
    box = pg.locator("[data-testid=stFileUploader]").filter(has_text=label)
    box.locator("input[type=file]").set_input_files(str(path))
    pg.get_by_text(expect).first.wait_for(timeout=120_000)
    settle(pg, 120_000)
    return pg.locator("[data-testid=stMain]").inner_text()


def alerts(pg) -> list[str]:
    return [t.strip() for t in pg.locator("[data-testid=stAlert], [data-testid=stCaptionContainer]").all_inner_texts()]


def check_page(pg, text: str) -> None:
    assert pg.locator("[data-testid=stException]").count() == 0, text[-3000:]
    assert "Traceback" not in text and len(text) < MAX_PAGE_CHARS, len(text)
    assert ghostscripts() == []


def one_sentence_with(pg, words: str) -> str:
    hits = [a for a in alerts(pg) if words in a]
    assert len(hits) == 1 and len(hits[0]) < 400 and "\n" not in hits[0].strip(), (words, alerts(pg))
    return hits[0]


def test_hostile_uploads_get_one_sentence_each(app_url, app_data_dir, page, corpus):  # noqa: F811
    pid = server_pid(app_url)
    pg = page
    lenet = share.encode(validate(gallery.raw("lenet5-mnist")))
    pg.goto(f"{app_url}/inspect?{share.PARAM}={lenet}")
    pg.get_by_text("Upload an image", exact=True).wait_for(timeout=90_000)
    settle(pg, 90_000)
    before = rss(pid)
    pg.get_by_text("Upload an image", exact=True).click()
    pg.locator("[data-testid=stFileUploader]").first.wait_for()
    settle(pg)

    shrunk = "shrunk from 5,000×5,000 to 1,024×1,024 pixels"
    text = upload(pg, corpus / "huge.png", "Image file", shrunk)
    check_page(pg, text)
    one_sentence_with(pg, shrunk)
    for name in ("loop-renamed.png", "garbage.png"):
        refused = f"{name} is not an image that can be read"
        text = upload(pg, corpus / name, "Image file", refused)
        check_page(pg, text)
        one_sentence_with(pg, refused)
        if name == "loop-renamed.png":
            ARTIFACTS.mkdir(exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / "hostile-upload-eps.png"), full_page=False)
    # named .eps, the uploader itself turns it away before the server sees it
    text = upload(pg, corpus / "loop.eps", "Image file", "not allowed")
    check_page(pg, text)

    kept_before = set((app_data_dir / "uploads").glob("*.csv"))
    csv_preset = gallery.raw("xor")
    csv_preset["data"] = {"name": "csv", "target": "y"}
    pg.goto(f"{app_url}/train?{share.PARAM}={share.encode(validate(csv_preset))}")
    pg.get_by_text("CSV file", exact=True).wait_for(timeout=90_000)
    settle(pg, 90_000)
    text = upload(pg, corpus / "latin1.csv", "CSV file", "the file is not UTF-8 text")
    check_page(pg, text)
    one_sentence_with(pg, "the file is not UTF-8 text")
    kept = set((app_data_dir / "uploads").glob("*.csv"))  # the browser modules share a server: tables kept before
    assert kept <= kept_before, "a refused table is not kept"
    text = upload(pg, corpus / "cell.csv", "CSV file", "is mostly numbers but row 9")
    check_page(pg, text)
    sentence = one_sentence_with(pg, "is mostly numbers but row 9")
    assert "x" * 41 not in sentence
    assert len(set((app_data_dir / "uploads").glob("*.csv")) - kept_before) == 1
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "hostile-upload-csv.png"), full_page=False)

    after = rss(pid)
    print(f"server RSS before the corpus {before / 1e6:.0f} MB, after {after / 1e6:.0f} MB")
    assert after - before < MAX_GROWTH, (before, after)
    assert ghostscripts() == []
