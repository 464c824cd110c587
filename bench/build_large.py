"""Build page reruns for a preset near the layer limit against the default preset, in one process, alternating.

A 999-layer preset (one Linear, then 998 ReLUs, or 999 distinct layers) should cost a rerun about what a small model
does: its layer list is paged, its layers' editors are drawn only when opened, and its summary and graph are computed
once per preset. Prints one JSON line per case: ratio = the large preset's median rerun time / the default preset's.

    python bench/build_large.py
"""

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from dlviz.preset import gallery  # noqa: E402

REPEATS = 5


def repeated(n: int = 999) -> dict:
    layers = [{"type": "Linear", "out_features": 4}] + [{"type": "ReLU"} for _ in range(n - 1)]
    return {"format": "dlviz-preset/1", "name": "deep", "seed": 0, "model": {"input_shape": [2], "layers": layers}}


def distinct(n: int = 999) -> dict:
    layers = [{"type": "Linear", "out_features": 2 + i % 500} if i % 2 == 0 else {"type": "ReLU"} for i in range(n)]
    return {"format": "dlviz-preset/1", "name": "deep", "seed": 0, "model": {"input_shape": [2], "layers": layers}}


def session(doc: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    at.session_state["preset"] = doc
    at.session_state["rev"] = 0
    return at


def timed(at: AppTest) -> float:
    t = time.perf_counter()
    at.run()
    return time.perf_counter() - t


def main() -> None:
    for case, doc in (("999 repeated layers", repeated()), ("999 distinct layers", distinct())):
        small, large = session(gallery.raw(gallery.DEFAULT)), session(doc)
        first = {"small": timed(small), "large": timed(large)}  # the large one's first run computes its summary
        times = {"small": [], "large": []}
        for _ in range(REPEATS):
            times["small"].append(timed(small))
            times["large"].append(timed(large))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            json.dumps(
                {
                    "bench": "build_large",
                    "case": case,
                    "ratio": round(med["large"] / med["small"], 3),
                    "large_rerun_s": round(med["large"], 4),
                    "default_rerun_s": round(med["small"], 4),
                    "large_first_s": round(first["large"], 3),
                    "default_first_s": round(first["small"], 3),
                }
            )
        )


if __name__ == "__main__":
    main()
