"""Where checkpoints go when several servers share a run store: rows of the database (a BLOB in SQLite, bytea in
PostgreSQL) against files under a shared DLVIZ_DATA_DIR with a row that names them.

For each backend and checkpoint size it times a checkpoint's write (torch.save, then the row; or the file and its row)
and its read (the row, then torch.load; or the row and the file), each the median of several repeats, and prints
JSON lines {"bench", "case", "ratio", "ms", "reference_ms", "mb"} with ratio = in the database / as a file (lower is
better for the database), then the same figures as a table. PostgreSQL is the database DLVIZ_TEST_DATABASE_URL (or
--pg URL) names, on this machine; without one only SQLite is measured.

Run: python bench/checkpoints.py [--quick] [--pg URL]

Measured on the 2-core development machine (another session's benchmarks running beside it), PostgreSQL 15 on
loopback, files on the local disk; ratio = in the database / as a file (milliseconds in brackets):

    case                 MB     write                 read
    sqlite, xor MLP      0.01   0.96 (1.1 / 1.2)      1.07 (1.9 / 1.8)
    sqlite, LeNet-5      0.75   0.79 (2.1 / 2.7)      1.06 (4.1 / 3.9)
    sqlite, VGG-ish      39     2.29 (124 / 54)       1.69 (93 / 55)
    postgresql, xor MLP  0.01   0.90 (1.4 / 1.6)      1.02 (2.4 / 2.3)
    postgresql, LeNet-5  0.75   2.02 (8.9 / 4.4)      2.40 (10.9 / 4.5)
    postgresql, VGG-ish  39     4.96 (345 / 70)       7.81 (462 / 59)

Before the store told PostgreSQL not to compress its binary columns (training.database.migrate), PostgreSQL's writes
were 7.8 (LeNet-5) and 22 (VGG-ish) times a file's. The database costs nothing for the small models the gallery
trains, and a few tenths of a second for a 39 MB state, which a run writes once a second at most
(store.CHECKPOINT_SECONDS) and which takes far longer than that to train an epoch of. So checkpoints stay in the
database: servers on different machines share everything through the one URL, with no shared file system to mount,
back up and keep consistent with the rows (and a file on a network file system is slower than the local one here).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from sqlalchemy import select  # noqa: E402

from dlviz.model import build  # noqa: E402
from dlviz.preset import gallery  # noqa: E402
from dlviz.preset.schema import validate  # noqa: E402
from dlviz.training.database import checkpoints  # noqa: E402
from dlviz.training.store import RunStore  # noqa: E402

VGGISH = {
    "format": "dlviz-preset/1",
    "name": "VGG-ish",
    "seed": 0,
    "model": {
        "input_shape": [3, 32, 32],
        "layers": [
            *[
                layer
                for width in (64, 128, 256)
                for layer in (
                    {"type": "Conv2d", "out_channels": width, "kernel_size": 3, "padding": 1},
                    {"type": "ReLU"},
                    {"type": "Conv2d", "out_channels": width, "kernel_size": 3, "padding": 1},
                    {"type": "ReLU"},
                    {"type": "MaxPool2d", "kernel_size": 2},
                )
            ],
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 512},
            {"type": "ReLU"},
            {"type": "Linear", "out_features": 10},
        ],
    },
}


def checkpoint(doc: dict) -> dict:
    """A checkpoint as a run saves one: the weights, Adam's two moments after a step, and the counters."""
    exp = validate(doc)
    model = build.build_model(exp, seed=0)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, *exp.model.input_shape)).float().sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1, "step": 1, "history": []}


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


class Files:
    """Checkpoints as files under a shared folder, each named by a row of the store (its state column left empty)."""

    def __init__(self, store: RunStore, folder: Path):
        self.store, self.folder = store, folder

    def path(self, run_id: str, step: int) -> Path:
        return self.folder / run_id / f"{step}.pt"

    def save(self, run_id: str, state: dict, label: str) -> None:
        path = self.path(run_id, int(state["step"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # a reader on another server sees the whole file or none
        row = {"run_id": run_id, "step": int(state["step"]), "epoch": int(state["epoch"]), "label": label, "state": None, "created": time.time()}
        self.store.write([(checkpoints, [row])])

    def load(self, run_id: str, step: int) -> dict:
        c = checkpoints.c
        (found,) = self.store._exec(select(c.step).where(c.run_id == run_id, c.step == step))
        return torch.load(io.BytesIO(self.path(run_id, found[0]).read_bytes()), weights_only=True)


def measure(backend: str, where: str, folder: Path, cases: dict, repeats: dict) -> list[dict]:
    store = RunStore(where)
    files = Files(store, folder)
    out = []
    for name, state in cases.items():
        mb = len(RunStore.checkpoint_ops("x", state, "")[0][1][0]["state"]) / 1e6
        in_db, as_file = f"db-{backend}-{name}", f"file-{backend}-{name}"
        n = repeats[name]
        write_db = median_ms(lambda: store.write(RunStore.checkpoint_ops(in_db, state, "epoch 1")), n)
        write_file = median_ms(lambda: files.save(as_file, state, "epoch 1"), n)
        read_db = median_ms(lambda: store.load_checkpoint(in_db, 1), n)
        read_file = median_ms(lambda: files.load(as_file, 1), n)
        for op, ours, ref in (("write", write_db, write_file), ("read", read_db, read_file)):
            row = {
                "bench": "checkpoints",
                "case": f"{backend}, {name}, {op}",
                "ratio": round(ours / ref, 2),
                "ms": round(ours, 2),
                "reference_ms": round(ref, 2),
            }
            out.append({**row, "mb": round(mb, 2)})
            print(json.dumps(out[-1]), flush=True)
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--pg", default=os.environ.get("DLVIZ_TEST_DATABASE_URL"), help="a PostgreSQL URL (default: DLVIZ_TEST_DATABASE_URL)")
    args = ap.parse_args()
    cases = {"xor MLP": checkpoint(gallery.raw("xor")), "LeNet-5": checkpoint(gallery.raw("lenet5-mnist")), "VGG-ish": checkpoint(VGGISH)}
    repeats = {"xor MLP": 20 if args.quick else 200, "LeNet-5": 10 if args.quick else 100, "VGG-ish": 3 if args.quick else 15}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlviz-bench-") as tmp:
        rows += measure("sqlite", str(Path(tmp) / "runs.sqlite"), Path(tmp) / "checkpoints", cases, repeats)
        if args.pg:
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            schema = f"bench_{os.getpid()}"
            admin = create_engine(args.pg)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            try:
                url = make_url(args.pg).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
                rows += measure("postgresql", url, Path(tmp) / "pg-checkpoints", cases, repeats)
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                admin.dispose()
        else:
            print("no PostgreSQL URL (--pg or DLVIZ_TEST_DATABASE_URL): SQLite only", file=sys.stderr)
    print(f"\n{'case':<30}{'MB':>7}{'write':>8}{'read':>8}   (in the database / as a file)", file=sys.stderr)
    for w, r in zip(rows[::2], rows[1::2]):
        print(
            f"{w['case'].rsplit(',', 1)[0]:<30}{w['mb']:>7.2f}{w['ratio']:>8.2f}{r['ratio']:>8.2f}   ({w['ms']:.1f}/{w['reference_ms']:.1f} ms, {r['ms']:.1f}/{r['reference_ms']:.1f} ms)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
