"""Files from strangers: data.source confined to this server's uploads, image decoders that run no other program and
decode no bombs, uploads bounded in memory and on disk, and user values quoted only in short."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from dlviz import paths
from dlviz.analysis import features
from dlviz.data import datasets as data
from dlviz.data import uploads
from dlviz.errors import QUOTE_CHARS, UserError
from dlviz.preset.schema import DataSpec

TABLE = b"a,b,label\n" + b"".join(f"{i % 7},{i * 0.5},{'yes' if i % 3 else 'no'}\n".encode() for i in range(40))
SECRET = b"api_key,password,user\n" + b"".join(f"{1000 + i},{i * 7 % 13},{i % 2}\n".encode() for i in range(20))
# what a quoted value may add to a sentence at most: the clipped value and its ellipsis
MAX_MESSAGE = 400


def spec(**kw) -> DataSpec:
    return DataSpec.model_validate({"name": "csv", **kw})


def refusal(fn, *args) -> UserError:
    with pytest.raises(UserError) as info:
        fn(*args)
    err = info.value
    assert "\n" not in str(err) and len(str(err)) < MAX_MESSAGE, str(err)[:500]
    assert str(paths.data_dir()) not in str(err) and str(paths.uploads_dir()) not in str(err)
    return err


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A data directory of the test's own, and a secret table outside it."""
    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path / "home"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(SECRET)
    return outside


# ---------------------------------------------------------------- data.source


def _sources(outside):
    """Sources that lead outside the uploads folder, each paired with one of the same length that leads nowhere."""
    link = paths.uploads_dir() / "link.csv"
    link.symlink_to(outside / "secret.csv")
    return [
        (str(outside / "secret.csv"), str(outside / "secxet.csv")),
        ("../../outside/secret.csv", "../../outside/secxet.csv"),
        ("link.csv", "lixk.csv"),
    ]


def test_the_app_reads_no_file_outside_the_uploads_folder_and_says_the_same_whether_it_exists(home):
    for leads_out, leads_nowhere in _sources(home):
        for fn in (data.describe, lambda s: data.load_dataset(s, 0), data.csv_source_path):
            a = refusal(fn, spec(source=leads_out, target="user"))
            b = refusal(fn, spec(source=leads_nowhere, target="user"))
            assert a.path == "data.source" and "api_key" not in a.message
            assert a.message.replace(leads_out, "X") == b.message.replace(leads_nowhere, "X"), (a.message, b.message)
        a = refusal(uploads.read, leads_out)
        assert a.message.replace(leads_out, "X") == refusal(uploads.read, leads_nowhere).message.replace(leads_nowhere, "X")


def test_the_cli_opts_into_local_paths_and_only_for_its_own_call(home, tmp_path):
    s = spec(source=str(home / "secret.csv"), target="user")
    with uploads.local_paths():
        assert data.describe(s) == ((2,), "classification", 2, ())
    refusal(data.describe, s)  # the setting ends with the block
    preset = {
        "format": "dlviz-preset/1",
        "name": "local",
        "seed": 0,
        "data": {"name": "csv", "source": str(home / "secret.csv"), "target": "user"},
        "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 2}]},
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "SGD", "lr": 0.1},
        "training": {"epochs": 1},
    }
    path = tmp_path / "local.json"
    path.write_text(json.dumps(preset))
    from dlviz.__main__ import main

    assert main(["train", str(path), "--json"]) == 0
    refusal(data.describe, s)  # the CLI's main leaves the process in the app's mode


def test_an_upload_is_found_by_its_bare_name(home):
    name = uploads.upload_name(TABLE, "my table.csv", "browser-a")
    assert "/" not in name and name.endswith(".csv")
    assert data.describe(spec(source=name, target="label")) == ((2,), "classification", 2, ())


def test_a_long_source_is_quoted_in_short(home):
    long = "/" + "a" * 190 + ".csv"  # the schema's longest
    err = refusal(data.describe, spec(source=long, target="y"))
    assert "'/" + "a" * (QUOTE_CHARS - 1) + "…'" in err.message


# ---------------------------------------------------------------- values from tables quoted in short

HUGE = "x" * 15_000_000  # one cell of a table within the upload limit
BIG = "x" * 100_000  # a cell repeated in many rows


def _csv(rows) -> bytes:
    return "\n".join(",".join(r) for r in rows).encode() + b"\n"


def test_a_huge_cell_in_a_mostly_numeric_column_is_quoted_in_short():
    rows = [["a", "y"]] + [[str(i), str(i % 2)] for i in range(40)]
    rows[5][0] = HUGE
    err = refusal(data.read_csv_table, _csv(rows), "y")
    assert "holds 'xxxx" in err.message and "…" in err.message


def test_huge_class_names_and_column_names_are_shown_in_short():
    rows = [["a", "y"]] + [[str(i), HUGE if i == 1 else ("small", "big")[i % 2]] for i in range(20)]
    table = data.read_csv_table(_csv(rows), "y")
    assert max(len(c) for c in table.class_names) <= QUOTE_CHARS + 1 and len(table.note) < MAX_MESSAGE
    ds = data.load_dataset(spec(target="y"), 0, csv_bytes=_csv(rows))
    assert ds.num_classes == 3 and max(len(c) for c in ds.class_names) <= QUOTE_CHARS + 1
    same = [["a", "y"]] + [[str(i), BIG] for i in range(20)]
    assert "holds the same value (xxx" in refusal(data.read_csv_table, _csv(same), "y").message
    wide = [["a", BIG, *(f"c{i}" for i in range(50))]] + [[str(i)] * 52 for i in range(5)]
    err = refusal(data.read_csv_table, _csv(wide), "nope")
    assert "and 42 more" in err.message
    table = data.read_csv_table(_csv(wide), BIG)  # a huge column name as the target
    assert len(table.note) < MAX_MESSAGE and max(len(f) for f in table.feature_names) <= QUOTE_CHARS + 1


# ---------------------------------------------------------------- images

# A 66-byte EPS whose PostScript never ends: Pillow's EPS plugin hands it to Ghostscript to render.
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A valid PNG of one grey 1-bit row of zeros that claims `width`×`height` pixels (its rows stop early)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(row * 4, 9))
        + _chunk(b"IEND", b"")
    )


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def no_programs(monkeypatch):
    """Records every attempt to start a program, and pretends Ghostscript is installed so Pillow would try."""
    from PIL import EpsImagePlugin

    started = []

    def refuse(*args, **kwargs):
        started.append(args[0] if args else kwargs.get("args"))
        raise AssertionError("a program was started")

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True, raising=False)
    for name in ("Popen", "check_call", "run", "call", "check_output"):
        monkeypatch.setattr(subprocess, name, refuse)
    monkeypatch.setattr(os, "system", refuse)
    return started


@pytest.mark.parametrize("payload", [EPS, b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"])
@pytest.mark.parametrize("name", ["drawing.eps", "drawing.png"])
def test_postscript_and_pdf_are_refused_without_starting_a_program(no_programs, monkeypatch, payload, name):
    asked = []
    real_open = Image.open

    def spy(fp, mode="r", formats=None):
        asked.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", spy)
    err = refusal(features.decode_image, payload, name)
    assert "not an image that can be read" in err.message
    assert no_programs == []
    assert asked and all(f is not None and set(f) <= {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"} for f in asked)


@pytest.mark.parametrize("side", [50_000, 6_000])
def test_a_pixel_bomb_is_refused_from_its_header(monkeypatch, side):
    data = png_header(side, side)
    assert len(data) < 2_000
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    err = refusal(features.decode_image, data, "bomb.png")
    assert "pixels" in err.message and "upload a smaller image" in err.message


def test_a_large_image_is_shrunk_before_it_becomes_floats():
    # a gradient, so the shrunk picture can be checked against the original's own values
    side = 5_000
    ramp = np.linspace(0, 255, side, dtype=np.float64)
    arr = np.broadcast_to(ramp[None, :], (side, side)).astype(np.uint8)
    pic = features.decode_image(_png(arr), "big.png")
    assert pic.pixels.shape == (1024, 1024) and pic.pixels.dtype == np.float32
    assert pic.pixels.nbytes <= 1024 * 1024 * 4 < side * side * 4 / 20
    assert "shrunk from 5,000×5,000 to 1,024×1,024" in pic.note
    # each shrunk pixel holds the ramp's value at its centre, in the original's pixel coordinates
    centres = (np.arange(1024) + 0.5) * side / 1024 - 0.5
    np.testing.assert_allclose(pic.pixels[512], np.interp(centres, np.arange(side), arr[0] / 255.0), atol=0.01)


def test_a_session_keeps_decoded_uploads_within_its_budget(monkeypatch):
    decoded = []
    real = features.decode_image
    monkeypatch.setattr(features, "decode_image", lambda d, n: decoded.append(n) or real(d, n))
    one = 64 * 64 * 4
    cache = features.PictureCache(limit_bytes=2 * one)
    images = [_png(np.full((64, 64), 10 * i, dtype=np.uint8)) for i in range(4)]
    for i, im in enumerate(images):
        assert float(cache.get(im, f"{i}.png").pixels[0, 0]) == pytest.approx(10 * i / 255)
        assert cache.nbytes <= 2 * one
    cache.get(images[3], "3.png")
    assert decoded == ["0.png", "1.png", "2.png", "3.png"]  # the newest is reused
    cache.get(images[0], "0.png")
    assert decoded[-1] == "0.png"  # the oldest was let go
    with pytest.raises(UserError):
        cache.get(EPS, "x.eps")
    with pytest.raises(UserError):
        cache.get(EPS, "x.eps")


# ---------------------------------------------------------------- uploads on disk


def test_a_session_quota_and_an_age_limit_with_an_injected_clock(home, monkeypatch):
    monkeypatch.setenv("DLVIZ_UPLOAD_QUOTA_BYTES", str(2 * len(TABLE) + 10))
    monkeypatch.setenv("DLVIZ_UPLOAD_MAX_AGE_S", "3600")
    tables = [TABLE.replace(b"label", f"label{i}".encode()) for i in range(3)]
    t0 = 1_000_000.0
    a = uploads.upload_name(tables[0], "t.csv", "browser-a", now=t0)
    b = uploads.upload_name(tables[1], "t.csv", "browser-a", now=t0 + 10)
    assert uploads.used_bytes("browser-a") == len(tables[0]) + len(tables[1])
    err = refusal(uploads.upload_name, tables[2], "t.csv", "browser-a", t0 + 20)
    assert "DLVIZ_UPLOAD_QUOTA_BYTES" in err.message
    assert uploads.upload_name(tables[0], "t.csv", "browser-a", now=t0 + 30) == a  # the same table again costs nothing
    assert uploads.upload_name(tables[2], "t.csv", "browser-b", now=t0 + 40)  # another session has its own quota
    # b was last written at t0 + 10 and a at t0 + 30: an hour later b goes, a stays
    assert uploads.sweep(now=t0 + 10 + 3601) == 1
    assert not (paths.uploads_dir() / b).exists() and (paths.uploads_dir() / a).exists()
    assert uploads.used_bytes("browser-a") == len(tables[0])
    refusal(uploads.read, b)
    assert uploads.upload_name(tables[2], "t.csv", "browser-a", now=t0 + 10 + 3602)  # the quota freed with it
    assert uploads.sweep(now=t0 + 10_000) == 2
    assert sorted(p.name for p in paths.uploads_dir().iterdir() if not p.name.startswith(".")) == []


@pytest.mark.parametrize("bad", [b"\xff\xfe\x00bad", b"", b"a,b\n", "é,x\n1,2\n".encode("latin-1"), b"h\n" + b"x" * 1000 + b"\n"])
def test_a_rejected_upload_is_not_kept(home, bad):
    before = sorted(p.name for p in paths.uploads_dir().rglob("*"))
    refusal(uploads.upload_name, bad, "bad.csv", "browser-a")
    assert sorted(p.name for p in paths.uploads_dir().rglob("*")) == before
