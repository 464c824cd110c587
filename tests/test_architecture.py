"""The engine's layout holds: nothing under dlviz/ imports Streamlit, and every import runs down the layers."""

import ast
from pathlib import Path

import pytest

DLVIZ = Path(__file__).resolve().parent.parent / "dlviz"
# from the bottom up; a module may import its own layer and those below it
LAYERS = ["base", "preset", "data", "model", "training", "analysis", "figures", "export", "cli"]
BASE = {"__init__", "errors", "limits", "paths", "text", "runtime", "loop"}


def layer(module: str) -> int:
    """The layer of a dlviz module given by its dotted name ("dlviz.preset.schema", "dlviz.errors", "dlviz.__main__")."""
    parts = module.split(".")[1:] or ["__init__"]
    if parts[0] == "__main__":
        return LAYERS.index("cli")
    if parts[0] in BASE:
        return LAYERS.index("base")
    assert parts[0] in LAYERS, f"{module} is in no layer: add its package to LAYERS"
    return LAYERS.index(parts[0])


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a file, those inside functions included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from dlviz import limits` imports the module dlviz.limits; `from dlviz.x import name` imports dlviz.x
            if node.module in ("dlviz",) or (node.module.count(".") == 1 and (DLVIZ / node.module.split(".")[1]).is_dir()):
                out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}:{node.lineno}: a relative import; the engine imports dlviz.… by name")
    return out


MODULES = sorted(DLVIZ.rglob("*.py"))


def name_of(path: Path) -> str:
    rel = path.relative_to(DLVIZ.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__") if rel.name == "__init__" else ".".join(rel.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(DLVIZ)))
def test_imports_run_down_the_layers_and_never_reach_streamlit(path):
    own = layer(name_of(path))
    for line, module in imports(path):
        top = module.split(".")[0]
        assert top != "streamlit", f"{path}:{line}: the engine never imports Streamlit"
        if top == "dlviz" and module.count(".") >= 1:
            target = (
                module
                if (DLVIZ.parent / (module.replace(".", "/") + ".py")).exists() or (DLVIZ.parent / module.replace(".", "/")).is_dir()
                else module.rsplit(".", 1)[0]
            )
            assert layer(target) <= own, f"{path.relative_to(DLVIZ)}:{line} imports {module}: {LAYERS[own]} may not import from {LAYERS[layer(target)]}"


def test_the_layout_is_what_a_newcomer_reads():
    """At most eight modules at the top, every package in a layer, and no module over 600 lines."""
    top = sorted(p.name for p in DLVIZ.glob("*.py"))
    assert len(top) <= 8, top
    assert {p.name for p in DLVIZ.iterdir() if p.is_dir() and (p / "__init__.py").exists()} <= set(LAYERS)
    long = {str(p.relative_to(DLVIZ)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from dlviz.training.store import RunStore\n    import streamlit\n")
    found = imports(bad)
    assert (2, "dlviz.training.store") in found and (3, "streamlit") in found
    assert layer("dlviz.training.store") > layer("dlviz.preset.schema")
