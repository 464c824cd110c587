"""bench/playground.py's in-process cases in quick mode (no browser): their lines parse and their ratios are numbers."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "playground.py"


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("bench_playground", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    yield mod
    torch.set_num_threads(threads)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def check(line: dict) -> None:
    assert line["bench"] == "playground"
    assert isinstance(line["case"], str) and line["case"]
    assert isinstance(line["ratio"], (int, float)) and math.isfinite(line["ratio"]) and line["ratio"] > 0


def test_maps_and_throughput_quick(bench, capsys):
    bench.maps_cost(quick=True)
    bench.throughput(quick=True)
    got = lines(capsys.readouterr().out)
    assert [g["case"] for g in got] == [
        "maps-vs-forward-batch",
        "maps-vs-forward-train",
        "frame-vs-forward-batch",
        "frame-vs-forward-train",
        "throughput-maps-on",
    ]
    for line in got:
        check(line)
    through = got[-1]
    assert math.isfinite(through["throughput_ratio"]) and through["throughput_ratio"] > 0
    assert through["frames_sent"] > 0
