"""A preset as a standalone PyTorch training script.

The script is assembled from dlviz.runtime's own source (the kernels the preset needs, found by walking its syntax
tree) followed by the preset's model and training loop, written out; it imports no dlviz."""
from __future__ import annotations

import ast
import inspect
import json
from functools import lru_cache
from typing import Any, Optional

import torch
from torch import nn

from dlviz import __version__, runtime
from dlviz import limits as _limits
from dlviz.errors import UserError, json_path
from dlviz.preset.registry import ALL_LAYERS, INITS, OPTIMIZERS, SCHEDULES, noting_calls
from dlviz.preset.schema import Experiment, LayerSpec

# ---------------------------------------------------------------- literals and calls


def _lit(v: Any) -> str:
    """A Python literal for a preset value (JSON scalars and lists); floats keep every bit through repr."""
    if isinstance(v, bool) or v is None or isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    raise TypeError(f"no literal for {type(v).__name__}")


def _same(v: Any, default: Any) -> bool:
    if isinstance(v, bool) or isinstance(default, bool):
        return v is default
    if isinstance(v, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(v) == list(default)
    if isinstance(v, (int, float)) and isinstance(default, (int, float)):
        return v == default
    return v is None and default is None or (isinstance(v, str) and v == default)


def _signature(fn) -> inspect.Signature:
    if fn in (nn.RNN, nn.LSTM, nn.GRU):  # they take (*args, **kwargs) and pass them on to RNNBase after the mode
        params = [p for p in inspect.signature(nn.RNNBase).parameters.values() if p.name != "mode"]
        if fn is nn.RNN:
            params.append(inspect.Parameter("nonlinearity", inspect.Parameter.KEYWORD_ONLY, default="tanh"))
        return inspect.Signature(params)
    return inspect.signature(fn)


def _call(name: str, fn, args: tuple, kwargs: dict, by_position: bool = False, show: tuple = (), lit=_lit) -> str:
    """`name(...)` for the call fn(*args, **kwargs), leaving out the arguments equal to fn's own defaults (unless named
    in `show`); required ones stand by position where they were given so, or everywhere with `by_position`."""
    signature = _signature(fn)
    bound = signature.bind(*args, **kwargs).arguments
    parts = []
    for i, (key, p) in enumerate(signature.parameters.items()):
        if key not in bound or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        v = bound[key]
        if p.default is p.empty and (by_position or i < len(args)):
            parts.append(lit(v))
        elif p.default is p.empty or key in show or not _same(v, p.default):
            parts.append(f"{key}={lit(v)}")
    return f"{name}({', '.join(parts)})"


# ---------------------------------------------------------------- the runtime's own source


@lru_cache(maxsize=None)
def _runtime() -> tuple[dict[str, tuple[int, str, frozenset]], dict[str, str]]:
    """runtime.py's top-level definitions, {name: (position, source, top-level names it uses)}, and its imports, {name: line}."""
    source = inspect.getsource(runtime)
    lines = source.splitlines()
    defs, imports = {}, {}
    for i, node in enumerate(ast.parse(source).body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.update({(a.asname or a.name).split(".")[0]: ast.get_source_segment(source, node) for a in node.names})
            continue
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        else:
            continue  # the module's docstring
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and lines[first - 2].startswith("#") and not lines[first - 2].startswith("# ---"):
            first -= 1  # a comment directly above a definition belongs to it
        walk = list(ast.walk(node))
        bound = {n.id for n in walk if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)} | {a.arg for a in walk if isinstance(a, ast.arg)}
        used = {n.id for n in walk if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound
        for name in names:
            defs[name] = (i, "\n".join(lines[first - 1:node.end_lineno]), frozenset(used))
    return defs, imports


class _Kernels:
    """The runtime definitions a script copies, each once, with everything they use, in the runtime's own order."""

    def __init__(self):
        self.done: set[int] = set()
        self.imports: set[str] = set()

    def take(self, *names: str) -> list[str]:
        """The source of the named definitions and of all they use, leaving out those taken before."""
        defs, imports = _runtime()
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += [u for u in defs[name][2] if u in defs]
                self.imports |= {imports[u] for u in defs[name][2] if u in imports}
        new = sorted({defs[n][0]: defs[n][1] for n in seen if defs[n][0] not in self.done}.items())
        self.done |= {i for i, _ in new}
        return [text for _, text in new]


# ---------------------------------------------------------------- the model


def _module_code(module: nn.Module, calls: dict, kernels: list[str]) -> str:
    """The constructor call that made `module`, as the registry made it (modules it was given written the same way)."""
    _, cls, args, kwargs = calls[id(module)]
    if getattr(runtime, cls.__name__, None) is cls:
        kernels.append(cls.__name__)
        name = cls.__name__
    elif getattr(nn, cls.__name__, None) is cls:
        name = f"nn.{cls.__name__}"
    else:
        raise KeyError(cls.__name__)
    return _call(name, cls, args, kwargs, by_position=True, show=("p", "dim"),
                 lit=lambda v: _module_code(v, calls, kernels) if isinstance(v, nn.Module) else _lit(v))


class _Model:
    """The model part of a script: the nested constructor calls, the runtime classes they need, and the inits in order."""

    def __init__(self, exp: Experiment, input_shapes: dict[str, tuple], weighted: set[str]):
        self.input_shapes = input_shapes
        self.weighted = weighted  # module names that hold a ≥ 2-D parameter (the only ones an init changes)
        self.kernels: list[str] = []
        self.inits: list[tuple[str, Any]] = []  # (module name, InitSpec) in the order apply_inits draws them
        self.lines = self.stack(exp.model.layers, ("model", "layers"), "layers", 2, exp.model.init)

    def stack(self, layers: list[LayerSpec], loc: tuple, mod_name: str, depth: int, inherited) -> list[str]:
        pad = "    " * depth
        out = [pad + "nn.Sequential("]
        for i, layer in enumerate(layers):
            out += self.layer(layer, (*loc, i), f"{mod_name}.{i}", depth + 1, inherited)
        return [*out, pad + "),"] if layers else [pad + "nn.Sequential(),"]

    def layer(self, layer: LayerSpec, loc: tuple, mod_name: str, depth: int, inherited) -> list[str]:
        pad = "    " * depth
        note = f"  # {json.dumps(layer.name)[1:-1]}" if layer.name else ""  # one line, control characters escaped
        init = layer.init if layer.init is not None else inherited
        if layer.type in ALL_LAYERS:
            with torch.device("meta"), noting_calls() as calls:
                module = ALL_LAYERS[layer.type].make(self.input_shapes[json_path(loc)], **layer.args)
            try:
                code = _module_code(module, calls, self.kernels)
            except KeyError:
                raise UserError(json_path(loc), f"{layer.type} layers cannot be exported as a script yet; export the model as ONNX instead") from None
            if init is not None and init.type != "default" and (layer.type != "Embedding" or layer.init is not None):
                if mod_name in self.weighted:
                    self.inits.append((mod_name, init))
            return [f"{pad}{code},{note}"]
        if layer.type == "Sequential":
            # a Sequential block is itself an nn.Sequential, so its children are named mod_name.0, mod_name.1, ...
            lines = self.stack(layer.layers, (*loc, "layers"), mod_name, depth, init)
            lines[0] += note
            return lines
        self.kernels.append(layer.type)
        if layer.type == "Residual":
            return [f"{pad}Residual({note}",
                    *self.stack(layer.body, (*loc, "body"), f"{mod_name}.body", depth + 1, init),
                    *self.stack(layer.shortcut or [], (*loc, "shortcut"), f"{mod_name}.shortcut", depth + 1, init),
                    f"{pad}),"]
        out = [f"{pad}Concat([{note}"]
        for i, branch in enumerate(layer.branches):
            out += self.stack(branch, (*loc, "branches", i), f"{mod_name}.branches.{i}", depth + 1, init)
        return [*out, f"{pad}]),"]


def _init_fill(init, kernels: list[str]) -> str:
    """The call that fills a weight `w` for an InitSpec: torch's own init, or the runtime's."""
    fn = INITS[init.type].fill
    if getattr(runtime, getattr(fn, "__name__", ""), None) is fn:
        kernels.append(fn.__name__)
        name = fn.__name__
    elif getattr(nn.init, getattr(fn, "__name__", ""), None) is fn:
        name = f"nn.init.{fn.__name__}"
    else:
        raise UserError("model.init", f"the init '{init.type}' cannot be exported as a script yet")
    return _call(name, fn, ("@w",), dict(init.args)).replace('"@w"', "w")


def _init_code(inits, kernels: list[str]) -> str:
    lines = ["@torch.no_grad()", "def init_weights(model):",
             '    """The preset\'s initializations, layer by layer in preset order (the order they draw random numbers in)."""']
    i = 0
    while i < len(inits):
        j = i
        while j + 1 < len(inits) and inits[j + 1][1] == inits[i][1]:
            j += 1
        init = inits[i][1]
        fill = f"lambda w: {_init_fill(init, kernels)}" + ("" if init.bias == "zeros" else ", zero_bias=False")
        names = [n for n, _ in inits[i:j + 1]]
        if len(names) == 1:
            lines.append(f"    init_module(model.get_submodule({_lit(names[0])}), {fill})")
        else:
            lines += [f"    for name in {_lit(names)}:", f"        init_module(model.get_submodule(name), {fill})"]
        i = j + 1
    kernels.append("init_module")
    return "\n".join(lines)


# ---------------------------------------------------------------- data


def _data_code(exp: Experiment, classification: bool) -> tuple[list[str], list[str], str, str]:
    """(constants, runtime kernels, load_data's source, heading) of the data section for the preset's dataset."""
    from dlviz.data.datasets import DIGITS_MEAN, DIGITS_STD, IMAGE_SETS, MNIST_MEAN, MNIST_STD, PLAYGROUND, POINT_SETS, option

    spec = exp.data
    name = spec.name
    consts = [f"VAL_FRACTION, TEST_FRACTION = {_lit(spec.val_fraction)}, {_lit(spec.test_fraction)}"]
    rng = "np.random.default_rng([SEED, {}])"
    labels = "int64" if classification else "float32"
    split = f"    parts = split(len(x), {{}}, VAL_FRACTION, TEST_FRACTION, {rng.format(1)})"
    tail = f"    return as_tensors([x[i] for i in parts], np.{{}}), as_tensors([y[i] for i in parts], np.{labels})"
    doc = '    """[train, validation, test] inputs and targets: {}, generated from SEED as dlviz generates them."""'
    if name in POINT_SETS:
        fn = runtime.POINT_SETS[name].__name__
        consts += [f"NUM_SAMPLES, NOISE = {option(spec, 'num_samples')}, {_lit(option(spec, 'noise'))}",
                   f"INPUTS = {_lit(option(spec, 'features'))}  # the input features of each point"]
        extra = ", classes=CLASSES" if name == "blobs" else ""
        body = [doc.format(f"the {name} set's points"), f"    points, y = {fn}(NUM_SAMPLES, NOISE, {rng.format(0)}{extra})",
                "    x = featurize(points, INPUTS)", split.format("y" if classification else "None"), tail.format("float32")]
        heading = f"TensorFlow Playground's {name} set" if name in PLAYGROUND else f"the {name} set"
        return consts, [fn, "featurize", "split", "as_tensors"], "\n".join(body), heading
    if name in ("curve", "sine", "tokens"):
        n = option(spec, "num_samples")
        if name == "curve":
            outliers = option(spec, "outliers")
            consts += [f"NUM_SAMPLES, NOISE, FUNCTION = {n}, {_lit(option(spec, 'noise'))}, {_lit(option(spec, 'function'))}"]
            make, kernels, heading = "curve(NUM_SAMPLES, NOISE, FUNCTION, {})", ["curve"], "a 1-D curve to fit"
        elif name == "sine":
            consts += [f"NUM_SAMPLES, NOISE, SEQ_LEN = {n}, {_lit(option(spec, 'noise'))}, {option(spec, 'seq_len')}"]
            make, kernels, heading = "sine(NUM_SAMPLES, NOISE, SEQ_LEN, {})", ["sine"], "sine waves to forecast"
        else:
            task = option(spec, "task")
            consts += [f"NUM_SAMPLES, SEQ_LEN, VOCAB = {n}, {option(spec, 'seq_len')}, {option(spec, 'vocab')}"]
            if task == "majority":
                make, kernels = "majority_tokens(NUM_SAMPLES, SEQ_LEN, VOCAB, {})", ["majority_tokens"]
            else:
                consts.append(f"TASK = {_lit(task)}")
                make, kernels = "ordered_tokens(NUM_SAMPLES, SEQ_LEN, VOCAB, TASK, {})", ["ordered_tokens"]
            heading = f"a toy sequence task ({task})"
        stratified = name == "tokens" and option(spec, "task") == "majority"
        body = [doc.format(heading), f"    x, y = {make.format(rng.format(0))}", split.format("y" if stratified else "None")]
        if name == "curve" and outliers:
            consts.append(f"OUTLIERS = {_lit(outliers)}  # the fraction of training targets moved far above the curve")
            body += ["    ys = [y[i] for i in parts]", f"    ys[0] = add_outliers(ys[0], OUTLIERS, {rng.format(3)})",
                     "    return as_tensors([x[i] for i in parts], np.float32), as_tensors(ys, np.float32)"]
            kernels.append("add_outliers")
        else:
            body.append(tail.format("int64" if name == "tokens" else "float32"))
        return consts, [*kernels, "split", "as_tensors"], "\n".join(body), heading
    if name == "csv":
        return _csv_code(spec, classification, consts)
    if name not in IMAGE_SETS:
        raise UserError("data.name", f"the {name} dataset cannot be exported as a script yet; train the preset with `python -m dlviz train`")
    mean, std = (MNIST_MEAN, MNIST_STD) if name == "mnist" else (DIGITS_MEAN, DIGITS_STD)
    consts.append(f"MEAN, STD = {_lit(mean)}, {_lit(std)}  # fixed pixel statistics: one image always maps to the same input")
    reader = runtime.IMAGES[name]
    body = ['    """[train, validation, test] images (pixels in [0, 1], normalized) and their labels."""',
            f"    images, labels = {reader.__name__}()"]
    if spec.subset is not None:
        consts.append(f"SUBSET = {spec.subset}")
        body += [f"    keep = {rng.format(2)}.permutation(len(images))[:SUBSET]", "    images, labels = images[keep], labels[keep]"]
    body += [f"    parts = split(len(images), labels, VAL_FRACTION, TEST_FRACTION, {rng.format(1)})",
             "    xs = [torch.from_numpy((images[i] - np.float32(MEAN)) / np.float32(STD)) for i in parts]",
             "    return xs, [torch.from_numpy(labels[i]) for i in parts]"]
    kernels = [reader.__name__, "split"]
    a = spec.augment
    if a is not None and (a.hflip or a.crop or a.noise):
        consts.append(f"HFLIP, CROP, PIXEL_NOISE = {a.hflip}, {a.crop}, {_lit(a.noise)}  # how training batches are augmented")
        kernels.append("augment")
    return consts, kernels, "\n".join(body), inspect.getdoc(reader).rsplit(", pixels", 1)[0]


def _csv_code(spec, classification: bool, consts: list[str]) -> tuple[list[str], list[str], str, str]:
    """The data section for a CSV table: read and prepared at run time as dlviz reads and prepares it, so that the
    script also trains on another table with the same columns."""
    from dlviz.data.datasets import csv_source_path

    path = csv_source_path(spec)
    consts += [f"CSV_PATH = {_lit(str(path))}  # the table; a path given as the script's first argument replaces it",
               f"TARGET = {_lit(spec.target)}  # the column to predict"]
    body = ['    """[train, validation, test] inputs and targets from the table at `path`, prepared as dlviz prepares a CSV table."""',
            "    frame = read_table(path)",
            "    features = [c for c in frame.columns if c != TARGET]",
            "    numeric = [c for c in features if is_numeric(frame[c])]",
            "    text = [c for c in features if c not in numeric]",
            "    table = frame[[*numeric, *text, TARGET]]",
            "    table = table[~incomplete_rows(table, [*numeric, TARGET])]",
            "    y = table[TARGET]"]
    if classification:
        body += ["    if not target_is_classes(y):",
                 '        raise ValueError(f"column {TARGET!r} of {path} holds numbers to regress on, but this model predicts classes")',
                 "    y = class_ids(y)",
                 "    parts = split(len(y), y, VAL_FRACTION, TEST_FRACTION, np.random.default_rng([SEED, 1]))"]
    else:
        body += ["    if target_is_classes(y):",
                 '        raise ValueError(f"column {TARGET!r} of {path} holds class labels, but this model predicts a number")',
                 "    y = y.to_numpy(dtype=np.float64)[:, None]",
                 "    parts = split(len(y), None, VAL_FRACTION, TEST_FRACTION, np.random.default_rng([SEED, 1]))",
                 "    y = standardize_target(y, parts[0])[0]"]
    body += ["    levels = {c: sorted(set(table[c].astype(str))) for c in text}  # text columns are one-hot encoded",
             "    x = table_inputs(table, numeric, levels, parts[0])[0]",
             f"    return as_tensors([x[i] for i in parts], np.float32), as_tensors([y[i] for i in parts], np.{'int64' if classification else 'float32'})"]
    kernels = ["read_table", "is_numeric", "incomplete_rows", "target_is_classes", "split", "table_inputs", "as_tensors",
               "class_ids" if classification else "standardize_target"]
    return consts, kernels, "\n".join(body), f"the CSV table {path.name}, predicting {spec.target!r}"


# ---------------------------------------------------------------- the script


def _meta(exp: Experiment):
    """The model built on the meta device (no memory): its input shapes per preset path, module names and parameter labels."""
    from dlviz.model.build import Network, _Builder
    from dlviz.training.trainer import param_label

    model = exp.model
    b = _Builder(model, "meta", _limits.current().max_train_params, count_flops=False)
    layers, out, _ = b.stack(model.layers, tuple(model.input_shape), ("model", "layers"), "layers", 0, None)
    net = Network(layers, tuple(model.input_shape), b.input_dtype, b.paths)
    shapes = {r.path: tuple(r.input_shape) for r in b.rows}
    weighted = {name for name, m in net.named_modules() if any(p.dim() >= 2 for p in m.parameters())}
    labels = [param_label(net, n) for n, p in net.named_parameters() if p.requires_grad]
    return shapes, weighted, labels, tuple(out)


def script(exp: Experiment) -> str:
    """A standalone Python script (PyTorch and the data code, no dlviz import) that trains the preset exactly as
    `python -m dlviz train PRESET --json` does and prints the same lines."""
    from dlviz.training.fit import check_trainable
    from dlviz.training.losses import make_objective

    _, task, classes, target_shape = check_trainable(exp)
    shapes, weighted, labels, out_shape = _meta(exp)
    if not labels:
        raise UserError("model.layers", "the model has no trainable parameters, so there is nothing to train or export")
    model = _Model(exp, shapes, weighted)
    init_code = _init_code(model.inits, model.kernels) if model.inits else None
    objective = make_objective(exp.loss, task, classes, target_shape, out_shape)
    tr, data = exp.training, exp.data
    classification = task == "classification"
    data_consts, data_kernels, load, data_heading = _data_code(exp, classification)
    es = tr.early_stopping
    k = _Kernels()

    head = [f"SEED = {exp.seed}", f"EPOCHS = {tr.epochs}", f"BATCH_SIZE = {data.batch_size}", *data_consts]
    if classification:
        head.append(f"CLASSES = {classes}")
    if tr.l1 > 0 or tr.l2 > 0:
        head.append(f"L1, L2 = {_lit(tr.l1)}, {_lit(tr.l2)}  # λ₁·Σ|w| and λ₂·Σw² added to the loss")
    if tr.grad_clip is not None:
        head.append(f"GRAD_CLIP = {_lit(tr.grad_clip)}  # the largest global gradient norm")
    if tr.max_norm is not None:
        head.append(f"MAX_NORM = {_lit(tr.max_norm)}  # the largest norm of each unit's incoming weights")
    if es is not None:
        head.append(f"PATIENCE, MIN_DELTA, RESTORE_BEST = {es.patience}, {_lit(es.min_delta)}, {es.restore_best}  # early stopping")
    head.append(f"THREADS = {_limits.current().train_threads}  # one thread computes the same bits on every run, as dlviz trains")

    signature = "def load_data(path=CSV_PATH):" if data.name == "csv" else "def load_data():"
    parts = ["\n".join(head), _section(f"data: {data_heading}"), *k.take(*data_kernels), f"{signature}\n{load}", _section("model"),
             *k.take(*model.kernels)]
    parts.append("\n".join(["class Net(nn.Module):",
                            '    """The preset\'s model; its parameter names are dlviz\'s, so weights saved by dlviz load into it."""',
                            "", "    def __init__(self):", "        super().__init__()",
                            "        self.layers = " + model.lines[0].strip(), *model.lines[1:-1], "        )", "",
                            "    def forward(self, x):", "        return self.layers(x)"]))
    if init_code:
        parts.append(init_code)
    parts.append(_section("loss and metrics"))
    prepare = objective.prepare
    parts += k.take("evaluate", *([prepare.__name__] if prepare else []), *([] if classification else ["batch_r2"]),
                    *(["weight_penalty"] if tr.l1 > 0 or tr.l2 > 0 else []))
    make = _call(f"nn.{type(objective.loss_fn).__name__}", type(objective.loss_fn), (), dict(exp.loss.args))
    parts += [f"loss_fn = {make}",
              'def loss_of(out, y):\n    """The loss of a batch, its targets prepared for the loss as dlviz prepares them."""\n'
              f"    return loss_fn({f'*{prepare.__name__}(out, y)' if prepare else 'out, y'})"]
    parts.append(_section("training"))
    parts += k.take("divergence_reason", "json_safe", *(["clip_gradients_"] if tr.grad_clip is not None else []),
                    *(["renorm_"] if tr.max_norm is not None else []))
    parts.append("# preset paths of the trainable tensors, in model.parameters() order, for messages\n" + _wrapped("PARAMETERS", labels))
    parts += [_main_code(exp, classification, bool(model.inits)), 'if __name__ == "__main__":\n    sys.exit(main())']

    preset_lines = _compact_json(exp.to_dict()).splitlines()
    std = sorted({"import json", "import math", "import sys", *(i for i in k.imports if i.startswith("import ") and "torch" not in i
                                                                  and "numpy" not in i)})
    top = ['"""Train one dlviz preset with plain PyTorch: its data, model, loss, optimizer and training loop, written out.',
           "",
           "Running it prints one JSON line per epoch and then the final result: the same lines, to the last digit, as",
           "`python -m dlviz train PRESET --json` prints for the preset below (on a CPU, with the same library versions).",
           '"""', f"# Exported by dlviz {__version__} from this preset:", *("# " + line for line in preset_lines), "",
           *std, "", "import numpy as np", "import torch", "from torch import nn"]
    return _join(["\n".join(top), *parts])


def _schedule_code(exp: Experiment) -> Optional[str]:
    s = exp.schedule
    if s is None:
        return None
    cls = SCHEDULES[s.type].cls
    code = _call(f"torch.optim.lr_scheduler.{cls.__name__}", cls, ("@optimizer",), dict(s.args)).replace('"@optimizer"', "optimizer")
    if SCHEDULES[s.type].step == "batch":
        code = code[:-1] + ", total_steps=EPOCHS * steps_per_epoch)"
    return code


def _compact_json(v: Any, indent: int = 0, lead: int = 0, width: int = 110) -> str:
    """JSON with each value on one line where it fits, so a preset reads as a short list of layers (ASCII only)."""
    flat = json.dumps(v)
    if indent + lead + len(flat) <= width or not isinstance(v, (dict, list)) or not v:
        return flat
    pad = " " * (indent + 2)
    if isinstance(v, dict):
        items = [f"{pad}{json.dumps(k)}: {_compact_json(x, indent + 2, len(json.dumps(k)) + 2, width)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _compact_json(x, indent + 2, 0, width) for x in v]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def _join(blocks: list[str]) -> str:
    """Top-level blocks with PEP 8 spacing: two blank lines between them, one after a section heading."""
    out = ""
    for block in blocks:
        block = block.strip("\n")
        if not block:
            continue
        if not out:
            out = block
        elif out.rsplit("\n", 1)[-1].startswith("# ---"):
            out += "\n\n" + block
        else:
            out += "\n\n\n" + block
    return out + "\n"


def _wrapped(name: str, items: list, width: int = 110) -> str:
    """`NAME = [...]` on one line, or one item a line when that would be long."""
    one = f"{name} = {_lit(items)}"
    if len(one) <= width:
        return one
    return f"{name} = [\n" + "".join(f"    {_lit(x)},\n" for x in items) + "]"


def _section(title: str) -> str:
    return f"# {'-' * 64} {title}"


def _main_code(exp: Experiment, classification: bool, has_inits: bool) -> str:
    """main(): the training loop, step for step the trainer's, with only the branches this preset takes."""
    tr, data = exp.training, exp.data
    es = tr.early_stopping
    step = SCHEDULES[exp.schedule.type].step if exp.schedule is not None else None
    augment = data.augment is not None and (data.augment.hflip or data.augment.crop or data.augment.noise)
    penalty = tr.l1 > 0 or tr.l2 > 0
    key = "accuracy" if classification else "r2"
    evaluate = "evaluate(model, x_{0}, y_{0}, loss_of" + (", CLASSES)[:2]" if classification else ")[:2]")
    opt = OPTIMIZERS[exp.optimizer.type].cls
    opt_args = {k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()}
    L = ["torch.set_num_threads(THREADS)"]  # lines of main(), indented by 4
    add = L.append
    if data.name == "csv":
        add("path = sys.argv[1] if len(sys.argv) > 1 else CSV_PATH  # a table named on the command line replaces the exported one")
    add(f"(x_train, x_val, x_test), (y_train, y_val, y_test) = load_data({'path' if data.name == 'csv' else ''})")
    add("torch.manual_seed(SEED)  # the weights: layers draw their initial values in preset order")
    add("model = Net()")
    if has_inits:
        add("init_weights(model)")
    add("params = [p for p in model.parameters() if p.requires_grad]")
    if penalty or tr.max_norm is not None:
        add("weights = [p for p in params if p.dim() >= 2]  # penalties and max-norm act on weights, not biases")
    add(f"optimizer = {_call(f'torch.optim.{opt.__name__}', opt, ('@params',), opt_args)}".replace('"@params"', "params"))
    add("n = len(x_train)")
    if step == "batch":
        add("steps_per_epoch = math.ceil(n / BATCH_SIZE)")
    if step is not None:
        add(f"scheduler = {_schedule_code(exp)}")
    add("generator = torch.Generator().manual_seed(SEED)  # batch order" + (" and augmentation" if augment else ""))
    add("torch.manual_seed(SEED)  # dropout draws from the global generator, reseeded after the model is built")
    add("history, epoch, step = [], 0, 0")
    add('status, reason = "finished", ""')
    if es is not None:
        add('best, best_epoch, best_state, wait, stop = math.inf, 0, None, 0, ""')
    add("while epoch < EPOCHS and not stop:" if es is not None else "while epoch < EPOCHS:")
    B = ["model.train()", "perm = torch.randperm(n, generator=generator)",  # the epoch body, indented by 8
         "xs, ys = x_train[perm], y_train[perm]  # one gather per epoch, then each batch is a slice",
         "loss_terms, metric_terms" + (", labels = [], [], 0" if classification else " = [], []")]
    if penalty:
        B.append("penalty_terms = []")
    B.append("for i in range(0, n, BATCH_SIZE):")
    S = ["xb, yb = xs[i:i + BATCH_SIZE], ys[i:i + BATCH_SIZE]"]  # the step body, indented by 12
    if augment:
        S.append("xb = augment(xb, generator, MEAN, STD, HFLIP, CROP, PIXEL_NOISE)")
    S += ["out = model(xb)", "loss = loss_of(out, yb)", "optimizer.zero_grad()"]
    S += ["pen = weight_penalty(weights, L1, L2)", "(loss + pen).backward()"] if penalty else ["loss.backward()"]
    S += ["grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]",
          "flat = torch.cat([g.reshape(-1) for g in grads])",
          "# a NaN or an infinity in any gradient or in the loss makes this sum non-finite",
          "if not math.isfinite(float(flat.sum()) + float(loss.detach())):",
          "    bad = [name for name, g in zip(PARAMETERS, grads) if not bool(torch.isfinite(g).all())]",
          '    status, reason = "diverged", divergence_reason(float(loss.detach()), bad, epoch, step)',
          "    break"]
    if tr.grad_clip is not None:
        S.append("clip_gradients_(params, float(flat.norm()), GRAD_CLIP)")
    S.append("optimizer.step()")
    if tr.max_norm is not None:
        S.append("renorm_(weights, MAX_NORM)")
    S += ["out = out.detach()", "loss_terms.append(float(loss.detach()) * len(yb))"]
    if penalty:
        S.append("penalty_terms.append(float(pen.detach()) * len(yb))")
    if classification:
        S += ["metric_terms.append(float((predicted_classes(out, CLASSES) == yb).sum()))", "labels += yb.numel()"]
    else:
        S.append("metric_terms.append(float(batch_r2(out, yb, torch.tensor([yb.numel()]))[0]) * len(yb))")
    S.append("step += 1")
    if step == "batch":
        S.append("scheduler.step()  # this schedule steps every batch")
    B += ["    " + x for x in S]
    B.append("else:  # the epoch ran to its end")
    E = [f"val_loss, val_metric = {evaluate.format('val')} if len(x_val) else (math.nan, math.nan)",  # indented by 12
         "# exact sums (math.fsum) of the per-step terms, as dlviz's trainer takes them",
         'record = {"epoch": epoch + 1, "train_loss": math.fsum(loss_terms) / n, "val_loss": val_loss,',
         f"          \"train_{key}\": math.fsum(metric_terms) / {'labels' if classification else 'n'}, \"val_{key}\": val_metric,",
         '          "lr": float(optimizer.param_groups[0]["lr"])}']
    if penalty:  # what the optimizer minimised: the data loss plus the weights' penalty
        E += ['record["train_penalty"] = math.fsum(penalty_terms) / n',
              'record["train_total"] = record["train_loss"] + record["train_penalty"]']
    E += ["epoch += 1", "history.append(record)"]
    if step in ("epoch", "val_loss"):
        E.append("scheduler.step(val_loss)" if step == "val_loss" else "scheduler.step()")
    if es is not None:
        restored = ", best weights restored" if es.restore_best else ""
        E += ["if val_loss < best - MIN_DELTA:", "    best, best_epoch, wait = val_loss, epoch, 0", "    if RESTORE_BEST:",
              "        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}", "else:", "    wait += 1",
              "    if wait >= PATIENCE:",
              f'        stop = f"early stopping at epoch {{epoch}}: val_loss last improved at epoch {{best_epoch}}{restored}"']
    E += ["print(json.dumps(json_safe(record)), flush=True)", "continue"]
    B += ["    " + x for x in E]
    B.append("break  # diverged: a partial epoch is not recorded")
    L += ["    " + x for x in B]
    if es is not None:
        L += ["if stop and epoch < EPOCHS:", "    reason = stop",
              'restored = best_state is not None and RESTORE_BEST and status != "diverged"',
              "if restored:", "    model.load_state_dict(best_state)"]
    L += ['result = {"status": status, "epochs": epoch, "steps": step}', "if history:",
          '    result.update({k: v for k, v in history[-1].items() if k not in ("lr", "epoch")})']
    if es is not None:
        L += ["if restored:  # early stopping restored the best weights: report what the model now scores",
              f"    val_loss, val_metric = {evaluate.format('val')}",
              f'    result.update({{"best_epoch": best_epoch, "val_loss": val_loss, "val_{key}": val_metric}})']
    L += ["if reason:", '    result["reason"] = reason']
    if data.test_fraction > 0:
        L += ['if len(x_test) and status != "diverged":', f'    result["test_loss"], result["test_{key}"] = {evaluate.format("test")}']
    L += ["print(json.dumps(json_safe(result)), flush=True)", 'if status == "diverged":',
          '    print(f"error: the run diverged: {reason}", file=sys.stderr)', "    return 3", "return 0"]
    return "\n".join(["def main():", '    """Train, printing a JSON line per epoch and the final result; exit 3 if the run diverges."""',
                      *("    " + x for x in L)])
