"""A preset as a standalone PyTorch training script.

The script is assembled from the kernels' own source (those of dlviz.runtime and dlviz.loop the preset needs, found by
walking their syntax trees) followed by the preset's model and training loop, written out; it imports no dlviz."""

from __future__ import annotations

import ast
import inspect
import json
from functools import lru_cache
from itertools import groupby
from typing import Any

from torch import nn

from dlviz import __version__, loop, runtime
from dlviz import limits as _limits
from dlviz.errors import UserError
from dlviz.preset.registry import INITS, OPTIMIZERS, SCHEDULES, noting_calls
from dlviz.preset.schema import Experiment

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
def _runtime() -> tuple[dict[str, tuple[tuple, str, frozenset]], dict[str, str]]:
    """The kernel modules' top-level definitions, {name: (position, source, top-level names it uses)}, and their imports,
    {name: line}: runtime.py's, then loop.py's."""
    defs, imports = {}, {}
    for m, module in enumerate((runtime, loop)):
        source = inspect.getsource(module)
        lines = source.splitlines()
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
                defs[name] = ((m, i), "\n".join(lines[first - 1 : node.end_lineno]), frozenset(used))
    return defs, imports


class _Kernels:
    """The runtime definitions a script copies, each once, with everything they use, in the runtime's own order."""

    def __init__(self):
        self.done: set[tuple] = set()
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
    return _call(
        name, cls, args, kwargs, by_position=True, show=("p", "dim"), lit=lambda v: _module_code(v, calls, kernels) if isinstance(v, nn.Module) else _lit(v)
    )


def _model_lines(module: nn.Module, name: str, net, calls: dict, rows: dict, kernels: list[str], depth: int) -> list[str]:
    """The code that makes a module of the network built on the meta device: a layer as the registry's noted call, a list of
    layers as nn.Sequential, a Residual or Concat block as the runtime's class, each holding its children written the same way."""
    pad, row = "    " * depth, rows.get(net.json_paths.get(name))
    note = f"  # {json.dumps(row.name)[1:-1]}" if row is not None and row.name else ""  # one line, control characters escaped
    if id(module) in calls or not isinstance(module, (nn.Sequential, runtime.Residual, runtime.Concat)):
        try:
            return [f"{pad}{_module_code(module, calls, kernels)},{note}"]
        except KeyError:
            raise UserError(row.path, f"{row.type} layers cannot be exported as a script yet; export the model as ONNX instead") from None
    children = module.branches.named_children() if isinstance(module, runtime.Concat) else module.named_children()
    prefix = f"{name}.branches" if isinstance(module, runtime.Concat) else name
    lines = [line for key, child in children for line in _model_lines(child, f"{prefix}.{key}", net, calls, rows, kernels, depth + 1)]
    kind = type(module).__name__ if isinstance(module, (runtime.Residual, runtime.Concat)) else None
    if kind:
        kernels.append(kind)
    opening, closing = {"Residual": ("Residual(", "),"), "Concat": ("Concat([", "]),")}.get(kind, ("nn.Sequential(", "),"))
    return [f"{pad}{opening}{note}", *lines, f"{pad}{closing}"] if lines or kind else [f"{pad}nn.Sequential(),{note}"]


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
    """init_weights(): the inits layer by layer in preset order, the order they draw random numbers in (a loop for a run of
    layers with the same init)."""
    lines = [
        "@torch.no_grad()",
        "def init_weights(model):",
        '    """The preset\'s initializations, layer by layer in preset order (the order they draw random numbers in)."""',
    ]
    for init, group in groupby(inits, key=lambda item: item[1]):
        fill = f"lambda w: {_init_fill(init, kernels)}" + ("" if init.bias == "zeros" else ", zero_bias=False")
        names = [name for name, _ in group]
        lines += (
            [f"    init_module(model.get_submodule({_lit(names[0])}), {fill})"]
            if len(names) == 1
            else [f"    for name in {_lit(names)}:", f"        init_module(model.get_submodule(name), {fill})"]
        )
    kernels.append("init_module")
    return "\n".join(lines)


# ---------------------------------------------------------------- data


def _data_code(exp: Experiment, classification: bool) -> tuple[list[str], list[str], str, str]:
    """(constants, runtime kernels, load_data's body, heading) of the data section: the runtime's own calls for the dataset."""
    from dlviz.data import canvases, masks
    from dlviz.data.datasets import IMAGE_SETS, PLAYGROUND, POINT_SETS, csv_source_path, option
    from dlviz.export import coins

    spec, name = exp.data, exp.data.name
    consts = [f"VAL_FRACTION, TEST_FRACTION = {_lit(spec.val_fraction)}, {_lit(spec.test_fraction)}"]
    fractions = "SEED, VAL_FRACTION, TEST_FRACTION"
    doc = '    """[train, validation, test] inputs and targets: {}, as dlviz {} them."""'
    if name == "csv":
        path = csv_source_path(spec)
        consts += [
            f"CSV_PATH = {_lit(str(path))}  # the table; a path given as the script's first argument replaces it",
            f"TARGET = {_lit(spec.target)}  # the column to predict",
        ]
        heading = f"the CSV table {path.name}, predicting {spec.target!r}"
        body = [doc.format("the table at `path`", "prepares"), f"    return table_data(read_table(path), TARGET, {classification}, {fractions})[:2]"]
        return consts, ["read_table", "table_data"], "\n".join(body), heading
    if name in IMAGE_SETS:
        reader, a = runtime.IMAGES[name], spec.augment
        consts += [
            f"MEAN, STD = {_lit(runtime.PIXEL_STATS[name])}  # fixed pixel statistics: one image always maps to the same input",
            f"SUBSET = {_lit(spec.subset)}  # images drawn from the set (None: all)",
            *([f"DIGITS = {_lit(spec.classes)}  # the digits kept, relabelled 0, 1, ... in this order"] if spec.classes else []),
        ]
        kernels = [reader.__name__, "image_data"]
        if a is not None and (a.hflip or a.crop or a.noise):
            consts.append(f"HFLIP, CROP, PIXEL_NOISE = {a.hflip}, {a.crop}, {_lit(a.noise)}  # how training batches are augmented")
            kernels.append("augment")
        body = [
            doc.format("images (pixels in [0, 1], normalized) and labels", "reads"),
            f"    images, labels = {reader.__name__}()",
            f"    return image_data(images, labels, MEAN, STD, SUBSET, {fractions}{', DIGITS' if spec.classes else ''})[:2]",
        ]
        return consts, kernels, "\n".join(body), inspect.getdoc(reader).rsplit(", pixels", 1)[0]
    if name in (canvases.NAME, masks.NAME):  # MNIST digits pasted on canvases by the kernel dlviz generates them with
        boxes = name == canvases.NAME
        keys = ("num_samples", "grid", "anchors", "max_digits") if boxes else ("num_samples", "canvas", "max_digits", "masks")
        args = ", ".join({"anchors": "ANCHORS_PER_CELL", "masks": "BINARY"}.get(k, k.upper()) for k in keys)
        kernel, values = "mnist_boxes" if boxes else "mnist_masks", [option(spec, k) == "strokes" if k == "masks" else option(spec, k) for k in keys]
        consts += [f"MEAN, STD = {_lit(runtime.PIXEL_STATS['mnist'])}  # MNIST's pixel statistics", f"{args} = {', '.join(map(_lit, values))}"]
        body = [
            doc.format(
                "64×64 canvases of MNIST digits (pixels normalized) and their YOLO grid targets"
                if boxes
                else "canvases of MNIST digits (pixels normalized) and a class for every pixel",
                "generates",
            ),
            "    images, labels = mnist_digits()",
            f"    x, y = {kernel}(images, labels, {args}, np.random.default_rng([SEED, SAMPLE_STREAM]))",
            f"    return split_data((x - np.float32(MEAN)) / np.float32(STD), y, {fractions})[:2]",
        ]
        heading = "MNIST digits pasted on 64×64 canvases" if boxes else "MNIST digits pasted on canvases, a class for every pixel"
        return consts, ["mnist_digits", kernel, "SAMPLE_STREAM", "split_data"], "\n".join(body), heading
    if name == coins.NAME:  # crops of the photo, cut by the kernel dlviz cuts them with
        return coins.data_code(spec, consts, doc)
    if name not in POINT_SETS and name not in ("curve", "sine", "tokens"):
        raise UserError("data.name", f"the {name} dataset cannot be exported as a script yet; train the preset with `python -m dlviz train`")
    task = option(spec, "task") if name == "tokens" else None
    fn = runtime.POINT_SETS.get(name) or getattr(
        runtime, {"tokens": {"majority": "majority_tokens", "brackets": "bracket_tokens"}.get(task, "ordered_tokens")}.get(name, name)
    )
    args, values = [], []
    for param in inspect.signature(fn).parameters:  # the generator's arguments, named as the dataset's options
        if param == "rng":
            args.append("np.random.default_rng([SEED, SAMPLE_STREAM])")
        elif param == "classes":
            args.append("classes=CLASSES")
        else:
            args.append("NUM_SAMPLES" if param == "n" else param.upper())
            values.append(_lit(option(spec, "num_samples" if param == "n" else param)))
    consts.append(f"{', '.join(a for a in args if a.isupper())} = {', '.join(values)}")
    made = "x"
    clicked = option(spec, "points") if name in POINT_SETS or name == "curve" else None
    if name in POINT_SETS:
        consts.append(f"INPUTS = {_lit(option(spec, 'features'))}  # the input features of each point")
        made = "points"
    if clicked:
        consts.append(f"POINTS = {_lit(clicked)}  # training points added by hand: [x1, x2, label]")
    outliers = option(spec, "outliers") if name == "curve" else 0
    if outliers:
        consts.append(f"OUTLIERS = {_lit(outliers)}  # the fraction of training targets moved far above the curve")
    heading = f"TensorFlow Playground's {name} set" if name in PLAYGROUND else f"the {name} set" + (f" ({task})" if task else "")
    body = [
        doc.format(heading, "generates"),
        f"    {made}, y = {fn.__name__}({', '.join(args)})",
        *(["    x = featurize(points, INPUTS)"] if made == "points" else []),
        f"    {'xs, ys, _ = ' if clicked else 'return '}split_data(x, y, {fractions}{', outliers=OUTLIERS' if outliers else ''}){'' if clicked else '[:2]'}",
        *([f"    return add_points(xs, ys, POINTS{', INPUTS' if made == 'points' else ''})"] if clicked else []),
    ]
    kernels = [fn.__name__, "SAMPLE_STREAM", "split_data", *(["featurize"] if made == "points" else []), *(["add_points"] if clicked else [])]
    return consts, kernels, "\n".join(body), heading


# ---------------------------------------------------------------- the script


def _meta(exp: Experiment):
    """The model built on the meta device (no memory), with the calls that made its layers, its summary rows by preset path,
    the inits it gets as (module name, InitSpec), its parameters' preset labels and its output shape."""
    from dlviz.model.build import Network, _Builder, init_plan
    from dlviz.training.trainer import param_label

    model = exp.model
    b = _Builder(model, "meta", _limits.current().max_train_params, count_flops=False)
    with noting_calls() as calls:
        layers, out, _ = b.stack(model.layers, tuple(model.input_shape), ("model", "layers"), "layers", 0, None)
    net = Network(layers, tuple(model.input_shape), b.input_dtype, b.paths)
    by_path = {path: name for name, path in net.json_paths.items()}
    # only layers holding a ≥ 2-D parameter are written: an init changes nothing else
    inits = [(by_path[path], init) for path, init in init_plan(model) if any(p.dim() >= 2 for p in net.get_submodule(by_path[path]).parameters())]
    labels = [param_label(net, n) for n, p in net.named_parameters() if p.requires_grad]
    return net, calls, {r.path: r for r in b.rows}, inits, labels, tuple(out)


def init_file(script_name: str) -> str:
    """The file, beside the script, that holds the starting weights of a preset with init_from."""
    return script_name.rsplit("/", 1)[-1].removesuffix(".py") + ".init.pt"


def script(exp: Experiment, name: str = "train.py") -> str:
    """A standalone Python script (PyTorch and the data code, no dlviz import) that trains the preset exactly as
    `python -m dlviz train PRESET --json` does and prints the same lines. A preset with init_from reads its starting
    weights from init_file(name) beside the script, written with it."""
    from dlviz.training.fit import check_trainable
    from dlviz.training.losses import make_objective

    _, task, classes, target_shape = check_trainable(exp)
    net, calls, rows, inits, labels, out_shape = _meta(exp)
    if not labels:
        raise UserError("model.layers", "the model has no trainable parameters, so there is nothing to train or export")
    kernels: list[str] = []
    lines = _model_lines(net.layers, "layers", net, calls, rows, kernels, 2)
    init_code = _init_code(inits, kernels) if inits else None
    if exp.training.tbptt is not None:
        kernels.append("set_tbptt")
    objective = make_objective(exp.loss, task, classes, target_shape, out_shape)
    tr, data, es, k = exp.training, exp.data, exp.training.early_stopping, _Kernels()
    classification = task == "classification"
    data_consts, data_kernels, load, data_heading = _data_code(exp, classification)
    head = [
        f"SEED = {exp.seed}",
        f"EPOCHS = {tr.epochs}",
        f"BATCH_SIZE = {data.batch_size}",
        *data_consts,
        f"CLASSES = {classes}" if classification else "CLASSES = None  # a regression: no classes",
    ]
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    if frozen:
        head.append(_wrapped("FROZEN", frozen) + "  # parameters of the layers with trainable: false, left out of the optimizer")
    if exp.init_from is not None:
        # the run store that init_from names is dlviz's own: out of a standalone script's reach, so its weights travel with it
        head.append(f"INIT_FROM = {_lit(init_file(name))}  # the starting weights (init_from), written beside this script")
    head += [
        line
        for on, line in [
            (tr.l1 > 0 or tr.l2 > 0, f"L1, L2 = {_lit(tr.l1)}, {_lit(tr.l2)}  # λ₁·Σ|w| and λ₂·Σw² added to the loss"),
            (tr.grad_clip is not None, f"GRAD_CLIP = {_lit(tr.grad_clip)}  # the largest global gradient norm"),
            (tr.max_norm is not None, f"MAX_NORM = {_lit(tr.max_norm)}  # the largest norm of each unit's incoming weights"),
            (tr.tbptt is not None, f"TBPTT = {tr.tbptt}  # truncated backpropagation through time: hidden states detached every TBPTT steps"),
            (es is not None, f"PATIENCE, MIN_DELTA, RESTORE_BEST = {es.patience}, {_lit(es.min_delta)}, {es.restore_best}  # early stopping" if es else ""),
            (True, f"THREADS = {_limits.current().train_threads}  # one thread computes the same bits on every run, as dlviz trains"),
        ]
        if on
    ]
    prepare = objective.prepare
    loss_cls = type(objective.loss_fn)
    own_loss = getattr(loop, loss_cls.__name__, None) is loss_cls  # a loss of the kernels' own (YOLOLoss), copied with them
    loss_call = _call(loss_cls.__name__ if own_loss else f"nn.{loss_cls.__name__}", loss_cls, (), dict(exp.loss.args))
    net = [
        "class Net(nn.Module):",
        '    """The preset\'s model; its parameter names are dlviz\'s, so weights saved by dlviz load into it."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
        "        self.layers = " + lines[0].strip(),
        *lines[1:-1],
        "        )",
        "",
        "    def forward(self, x):",
        "        return self.layers(x)",
    ]
    parts = [
        "\n".join(head),
        _section(f"data: {data_heading}"),
        *k.take(*data_kernels),
        f"def load_data({'path=CSV_PATH' if data.name == 'csv' else ''}):\n{load}",
        _section("model"),
        *k.take(*kernels),
        "\n".join(net),
        init_code,
        *(k.take("load_matching") if exp.init_from is not None else []),
        _section("loss and metrics"),
        *k.take(
            "evaluate",
            *([loss_cls.__name__] if own_loss else []),
            *([prepare.__name__] if prepare else []),
            *({"classification": [], "embedding": ["batch_auc"], "detection": ["grid_map"]}.get(objective.task, ["batch_r2"])),
            *(["weight_penalty"] if tr.l1 > 0 or tr.l2 > 0 else []),
        ),
        f"loss_fn = {loss_call}",
        'def loss_of(out, y):\n    """The loss of a batch, its targets prepared for the loss as dlviz prepares them."""\n'
        f"    return loss_fn({f'*{prepare.__name__}(out, y)' if prepare else 'out, y'})",
        _section("training"),
        *k.take(
            "train_step",
            "gradient_row",
            "divergence_reason",
            "epoch_record",
            "run_result",
            "json_safe",
            *(["EarlyStopping"] if es is not None else []),
            *(["clip_gradients_"] if tr.grad_clip is not None else []),
            *(["renorm_"] if tr.max_norm is not None else []),
        ),
        "# preset paths of the trainable tensors, in model.parameters() order, for messages\n" + _wrapped("PARAMETERS", labels),
        _main_code(exp, loop.metric_key(objective.task), bool(inits), bool(frozen)),
        'if __name__ == "__main__":\n    sys.exit(main())',
    ]
    std = sorted(
        {
            "import json",
            "import math",
            "import sys",
            *(["import os"] if exp.init_from is not None else []),
            *(i for i in k.imports if i.startswith("import ") and "torch" not in i and "numpy" not in i),
        }
    )
    top = [
        '"""Train one dlviz preset with plain PyTorch: its data, model, loss, optimizer and training loop, written out.',
        "",
        "Running it prints one JSON line per epoch and then the final result: the same lines, to the last digit, as",
        "`python -m dlviz train PRESET --json` prints for the preset below (on a CPU, with the same library versions).",
        '"""',
        f"# Exported by dlviz {__version__} from this preset:",
        *("# " + line for line in _compact_json(exp.to_dict()).splitlines()),
        "",
        *std,
        "",
        "import numpy as np",
        "import torch",
        "from torch import nn",
    ]
    return _join(["\n".join(top), *parts])


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
        block = (block or "").strip("\n")
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


def _main_code(exp: Experiment, key: str, has_inits: bool, frozen: bool) -> str:
    """main(): the training loop, step for step the trainer's, with only the branches this preset takes; `key` names the
    metric: accuracy, auc (the verification AUC of an embedding), map (a detector's mAP@0.5, of the validation canvases
    only) or r2."""
    tr, data, es = exp.training, exp.data, exp.training.early_stopping
    step = SCHEDULES[exp.schedule.type].step if exp.schedule is not None else None
    augment = data.augment is not None and (data.augment.hflip or data.augment.crop or data.augment.noise)
    penalty = tr.l1 > 0 or tr.l2 > 0
    evaluate = "evaluate(model, x_{0}, y_{0}, loss_of, %s)[:2]" % {"accuracy": "CLASSES", "map": "None, score=score"}.get(key, "None")
    opt = OPTIMIZERS[exp.optimizer.type].cls
    opt_args = {k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()}
    optimizer = _call(f"torch.optim.{opt.__name__}", opt, ("@params",), opt_args).replace('"@params"', "params")
    csv = data.name == "csv"
    if step is not None:
        cls = SCHEDULES[exp.schedule.type].cls
        scheduler = _call(f"torch.optim.lr_scheduler.{cls.__name__}", cls, ("@optimizer",), dict(exp.schedule.args)).replace('"@optimizer"', "optimizer")
        scheduler = scheduler[:-1] + ", total_steps=EPOCHS * steps_per_epoch)" if step == "batch" else scheduler
    L = [
        "torch.set_num_threads(THREADS)",  # lines of main(), indented by 4
        *(["path = sys.argv[1] if len(sys.argv) > 1 else CSV_PATH  # a table named on the command line replaces the exported one"] if csv else []),
        f"(x_train, x_val, x_test), (y_train, y_val, y_test) = load_data({'path' if csv else ''})",
        "torch.manual_seed(SEED)  # the weights: layers draw their initial values in preset order",
        "model = Net()",
        *(["init_weights(model)"] if has_inits else []),
        *(
            ["load_matching(model, torch.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), INIT_FROM), weights_only=True))"]
            if exp.init_from is not None
            else []
        ),
        *(["for name, p in model.named_parameters():", "    p.requires_grad_(name not in FROZEN)"] if frozen else []),
        *(["set_tbptt(model, TBPTT)"] if tr.tbptt is not None else []),
        "params = [p for p in model.parameters() if p.requires_grad]",
        *(["weights = [p for p in params if p.dim() >= 2]  # penalties and max-norm act on weights, not biases"] if penalty or tr.max_norm is not None else []),
        "gather = lambda loss: gradient_row(params, loss)  # every gradient and the loss in one row, checked for divergence",
        *(["penalty = lambda: weight_penalty(weights, L1, L2)  # added to the loss"] if penalty else []),
        *(["score = lambda out, y: grid_map(out, y, ANCHORS_PER_CELL)[0]  # a split's mAP@0.5: NMS within each digit, VOC's AP"] if key == "map" else []),
        *(["clip = lambda norm: clip_gradients_(params, norm, GRAD_CLIP)  # given the gradients' global norm"] if tr.grad_clip is not None else []),
        *(["constrain = lambda: renorm_(weights, MAX_NORM)  # after each step"] if tr.max_norm is not None else []),
        f"optimizer = {optimizer}",
        "n = len(x_train)",
        *(["steps_per_epoch = math.ceil(n / BATCH_SIZE)"] if step == "batch" else []),
        *([f"scheduler = {scheduler}"] if step is not None else []),
        "generator = torch.Generator().manual_seed(SEED)  # batch order" + (" and augmentation" if augment else ""),
        "torch.manual_seed(SEED)  # dropout draws from the global generator, reseeded after the model is built",
        *(["early = EarlyStopping(PATIENCE, MIN_DELTA, RESTORE_BEST)"] if es is not None else []),
        'history, epoch, step, status, reason, stop = [], 0, 0, "finished", "", ""',
        "while epoch < EPOCHS and not stop:",
    ]
    B = [
        "model.train()",
        "perm = torch.randperm(n, generator=generator)",  # the epoch body, indented by 8
        "xs, ys = x_train[perm], y_train[perm]  # one gather per epoch, then each batch is a slice",
        "loss_terms, metric_terms, penalty_terms, labels = [], [], [], 0",
        "for i in range(0, n, BATCH_SIZE):",
    ]
    rules = [f"{k}={k}" for k, on in (("penalty", penalty), ("clip", tr.grad_clip is not None), ("constrain", tr.max_norm is not None)) if on]
    S = [
        "xb, yb = xs[i:i + BATCH_SIZE], ys[i:i + BATCH_SIZE]",  # the step body, indented by 12
        *(["xb = augment(xb, generator, MEAN, STD, HFLIP, CROP, PIXEL_NOISE)"] if augment else []),
        f"out, loss, pen, row, finite = train_step(model, xb, yb, loss_of, optimizer, params, gather{''.join(', ' + r for r in rules)})",
        "if not finite:",
        "    bad = [name for name, p in zip(PARAMETERS, params) if p.grad is not None and not bool(torch.isfinite(p.grad).all())]",
        '    status, reason = "diverged", divergence_reason(float(loss.detach()), bad, epoch, step)',
        "    break",
        "out = out.detach()",
        "loss_terms.append(float(loss.detach()) * len(yb))",
        *(["penalty_terms.append(float(pen.detach()) * len(yb))"] if penalty else []),
        *(
            ["metric_terms.append(float((predicted_classes(out, CLASSES) == yb).sum()))", "labels += yb.numel()"]
            if key == "accuracy"
            else []
            if key == "map"  # scored on the validation canvases at the epoch's end only
            else [f"metric_terms.append(float(batch_{key}(out, yb, torch.tensor([yb.numel()]))[0]) * len(yb))"]
        ),
        "step += 1",
        *(["scheduler.step()  # this schedule steps every batch"] if step == "batch" else []),
    ]
    E = [
        f"val = {evaluate.format('val')} if len(x_val) else (math.nan, math.nan)",  # the epoch's end, indented by 12
        'lr = float(optimizer.param_groups[0]["lr"])',
        f"record = epoch_record(epoch + 1, n, loss_terms, metric_terms, labels, val, {_lit(key)}, lr" + (", penalty_terms)" if penalty else ")"),
        "epoch += 1",
        "history.append(record)",
        *({"epoch": ["scheduler.step()"], "val_loss": ["scheduler.step(val[0])"]}.get(step, [])),
        *(["stop = early.update(model, val[0], epoch)"] if es is not None else []),
        "print(json.dumps(json_safe(record)), flush=True)",
        "continue",
    ]
    B += [*("    " + x for x in S), "else:  # the epoch ran to its end", *("    " + x for x in E), "break  # diverged: a partial epoch is not recorded"]
    L += ["    " + x for x in B]
    if es is not None:
        L += [
            "if stop and epoch < EPOCHS:",
            "    reason = stop",
            "best = None",
            "if early.restore(model, status):  # report what the best weights score",
            f"    best = (early.best_epoch, *{evaluate.format('val')})",
        ]
    L += [
        f'test = {evaluate.format("test")} if len(x_test) and status != "diverged" else None',
        f"result = run_result(status, epoch, step, history[-1] if history else None, {_lit(key)}, {'best' if es is not None else 'None'}, reason, test)",
        "print(json.dumps(json_safe(result)), flush=True)",
        'if status == "diverged":',
        '    print(f"error: the run diverged: {reason}", file=sys.stderr)',
        "    return 3",
        "return 0",
    ]
    return "\n".join(
        ["def main():", '    """Train, printing a JSON line per epoch and the final result; exit 3 if the run diverges."""', *("    " + x for x in L)]
    )
