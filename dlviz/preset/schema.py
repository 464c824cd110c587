"""The preset schema (format dlviz-preset/1): parsing, validation with JSON paths, limits, JSON Schema."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, ClassVar, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from dlviz import limits as _limits
from dlviz.errors import FieldError, UserError, did_you_mean, json_path
from dlviz.preset.args import Arg, ArgError, check_args
from dlviz.preset.options import AUGMENT, DATA_ARGS, DATASETS, EARLY_STOPPING, SEED, TRAINING
from dlviz.preset.registry import ALL_LAYERS, BIAS_CHOICES, BLOCKS, INITS, LOSSES, OPTIMIZERS, SCHEDULES

FORMAT = "dlviz-preset/1"
MIGRATIONS: dict[str, Any] = {}  # older format name -> function(doc) -> doc one version newer

COMMON_DATA_KEYS = ("name", *DATA_ARGS)


def _cut(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


class Strict(BaseModel):
    """A preset section: unknown keys are errors with a suggestion, numbers must be finite."""

    # extra="forbid" only shows in the JSON Schema (additionalProperties: false): _known_keys rejects unknown keys first
    model_config = ConfigDict(strict=True, allow_inf_nan=False, validate_default=False, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, raw):
        if isinstance(raw, dict):
            allowed = list(cls.model_fields)
            for key in raw:
                if key not in allowed:
                    raise FieldError(f"unknown key '{key}'{did_you_mean(key, allowed)}", (key,))
        elif not isinstance(raw, BaseModel):
            raise FieldError(f"expected an object, got {_cut(raw)}")
        return raw


class _Typed(BaseModel):
    """A {"type": name, ...arguments} object checked against one registry table."""

    model_config = ConfigDict(strict=True)
    TABLE: ClassVar[dict]
    WHAT: ClassVar[str]
    type: str
    args: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, raw):
        if isinstance(raw, BaseModel):
            return raw
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, dict):
            raise FieldError(f'expected an object like {{"type": "{next(iter(cls.TABLE))}"}}, got {_cut(raw)}')
        raw = dict(raw)
        t = raw.pop("type", None)
        if t is None:
            raise FieldError(f"is required: one of {', '.join(cls.TABLE)}", ("type",))
        if not isinstance(t, str) or t not in cls.TABLE:
            raise FieldError(f"unknown {cls.WHAT} {_cut(t)}{did_you_mean(t, cls.TABLE) if isinstance(t, str) else ''}", ("type",))
        extra = cls._take_extra(raw)
        args = check_args(cls.TABLE[t].args, raw)  # an ArgError carries its key to the error's path
        return {"type": t, "args": args, **extra}

    @classmethod
    def _take_extra(cls, raw: dict) -> dict:
        return {}

    def to_dict(self, full: bool = False) -> dict:
        entry = self.TABLE[self.type]
        out = {"type": self.type}
        for k, v in self.args.items():
            if full or entry.args[k].required or v != entry.args[k].default:
                out[k] = v
        return out


class InitSpec(_Typed):
    """An initialization: a name from torch.nn.init (no trailing underscore) or {"type": name, ...args, "bias": ...}."""

    TABLE = INITS
    WHAT = "init"
    bias: str = "zeros"

    @classmethod
    def _take_extra(cls, raw: dict) -> dict:
        if "bias" not in raw:
            return {}
        b = raw.pop("bias")
        if b not in BIAS_CHOICES:
            raise FieldError(f"must be one of {', '.join(BIAS_CHOICES)}, got {_cut(b)}", ("bias",))
        return {"bias": b}

    def to_dict(self, full: bool = False):
        out = super().to_dict(full)
        if self.bias != "zeros":
            out["bias"] = self.bias
        return out if len(out) > 1 else self.type


class LossSpec(_Typed):
    TABLE = LOSSES
    WHAT = "loss"


class OptimizerSpec(_Typed):
    TABLE = OPTIMIZERS
    WHAT = "optimizer"


class ScheduleSpec(_Typed):
    TABLE = SCHEDULES
    WHAT = "schedule"


class LayerSpec(BaseModel):
    """One layer or block. The preset writes its arguments flat beside `type`; here they sit in `args`."""

    model_config = ConfigDict(strict=True)
    type: str
    name: Optional[str] = Field(None, max_length=80)
    init: Optional[InitSpec] = None
    trainable: bool = True  # false: the layer's (or block's) parameters are frozen, left out of the optimizer
    args: dict[str, Any] = {}
    body: Optional[list["LayerSpec"]] = None
    shortcut: Optional[list["LayerSpec"]] = None
    branches: Optional[list[list["LayerSpec"]]] = None
    layers: Optional[list["LayerSpec"]] = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, raw):
        if isinstance(raw, BaseModel):
            return raw
        if not isinstance(raw, dict):
            raise FieldError(f'expected a layer object like {{"type": "Linear", "out_features": 10}}, got {_cut(raw)}')
        raw = dict(raw)
        t = raw.pop("type", None)
        if t is None:
            raise FieldError('is required, e.g. "Linear" or "Conv2d"', ("type",))
        if not isinstance(t, str) or (t not in ALL_LAYERS and t not in BLOCKS):
            hint = did_you_mean(t, [*ALL_LAYERS, *BLOCKS]) if isinstance(t, str) else ""
            raise FieldError(f"unknown layer type {_cut(t)}{hint}", ("type",))
        out = {"type": t}
        for key in ("name", "init", "trainable"):
            # PReLU's own `init` argument (the starting slope) wins over the per-layer init override
            if key in raw and not (t in ALL_LAYERS and key in ALL_LAYERS[t].args):
                out[key] = raw.pop(key)
        if not isinstance(out.get("trainable", True), bool):
            raise FieldError(f"must be true or false, got {_cut(out['trainable'])}", ("trainable",))
        if t in BLOCKS:
            keys = BLOCKS[t]
            for key in raw:
                if key not in keys:
                    raise FieldError(f"unknown key '{key}' for {t}{did_you_mean(key, keys)}", (key,))
            required = {"Residual": ("body",), "Concat": ("branches",), "Sequential": ("layers",)}[t]
            for key in required:
                if key not in raw:
                    raise FieldError(f"is required for {t}", (key,))
            out.update(raw)
            return out
        out["args"] = check_args(ALL_LAYERS[t].args, raw)  # an ArgError carries its key to the error's path
        return out

    @field_validator("branches")
    @classmethod
    def _branches(cls, v):
        if v is not None and not v:
            raise FieldError("needs at least one branch")
        return v

    def children(self) -> list[tuple[tuple, list["LayerSpec"]]]:
        """The nested layer lists as (relative JSON path, list) pairs, in order."""
        if self.type == "Residual":
            return [(("body",), self.body), (("shortcut",), self.shortcut or [])]
        if self.type == "Concat":
            return [(("branches", i), b) for i, b in enumerate(self.branches)]
        if self.type == "Sequential":
            return [(("layers",), self.layers)]
        return []

    def to_dict(self, full: bool = False) -> dict:
        out: dict[str, Any] = {"type": self.type}
        if self.name:
            out["name"] = self.name
        if self.init is not None:
            out["init"] = self.init.to_dict(full)
        if not self.trainable:
            out["trainable"] = False
        if self.type in ALL_LAYERS:
            args = ALL_LAYERS[self.type].args
            for k, v in self.args.items():
                if full or args[k].required or v != args[k].default:
                    out[k] = v
        elif self.type == "Residual":
            out["body"] = [c.to_dict(full) for c in self.body]
            if self.shortcut:
                out["shortcut"] = [c.to_dict(full) for c in self.shortcut]
        elif self.type == "Concat":
            out["branches"] = [[c.to_dict(full) for c in b] for b in self.branches]
        else:
            out["layers"] = [c.to_dict(full) for c in self.layers]
        return out


class ModelSpec(Strict):
    input_shape: list[int] = Field(min_length=1, max_length=4)
    init: Optional[InitSpec] = None
    layers: list[LayerSpec] = []

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v):
        for i, n in enumerate(v):
            if n < 1:
                raise FieldError(f"must be a positive size, got {n}", (i,))
        lim = _limits.current().max_input_elements
        if math.prod(v) > lim:
            raise FieldError(f"{v} has {math.prod(v):,} elements per sample, over the limit of {lim:,} (DLVIZ_MAX_INPUT_ELEMENTS)")
        return v


def _checked(arg: Arg) -> Any:
    """A field type that `arg` checks and documents."""
    return Annotated[Any, AfterValidator(arg.validate), WithJsonSchema(arg.json_schema())]


def arg_model(name: str, args: dict[str, Arg], base: type[Strict] = Strict, **objects: type[Strict]) -> type[Strict]:
    """A preset section whose keys are `args`: each value checked by its Arg, each key left out at the Arg's default.
    An object-valued Arg is the section model given for its key in `objects`."""
    fields = {key: (Optional[objects[key]] if arg.kind == "object" else _checked(arg), ... if arg.required else arg.default) for key, arg in args.items()}
    return create_model(name, __base__=base, __module__=__name__, **fields)


Augment = arg_model("Augment", AUGMENT)
EarlyStopping = arg_model("EarlyStopping", EARLY_STOPPING)


class _Data(Strict):
    """The data section: `name` picks a dataset of options.DATASETS, whose own Args check the options it takes; a
    dataset option left out is None here, and the data layer uses the catalog's default."""

    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if v not in DATASETS:
            raise FieldError(f"unknown dataset {_cut(v)}{did_you_mean(v, DATASETS)}; choose one of {', '.join(DATASETS)}")
        return v

    @model_validator(mode="after")
    def _applies(self):
        args = DATASETS[self.name].args
        for key in self.model_fields_set - set(COMMON_DATA_KEYS):
            if key not in args:
                raise FieldError(f"does not apply to the {self.name} dataset (it takes {', '.join(args) or 'no options'})", (key,))
            if args[key].kind != "object":  # an object is its own section model, checked already
                try:
                    self.__dict__[key] = args[key].validate(getattr(self, key))
                except ArgError as e:
                    raise FieldError(e.message, (key, *e.loc)) from None
        for key, arg in args.items():
            if arg.required and getattr(self, key) is None:
                raise FieldError(f"is required for the {self.name} dataset: {arg.help}", (key,))
        if self.val_fraction + self.test_fraction >= 0.9:
            raise FieldError("val_fraction + test_fraction must leave at least 10% for training", ("test_fraction",))
        lim = _limits.current()
        if self.batch_size > lim.max_batch_size:
            raise FieldError(f"{self.batch_size} is over the limit of {lim.max_batch_size} (DLVIZ_MAX_BATCH_SIZE)", ("batch_size",))
        if self.num_samples is not None and self.num_samples > lim.max_samples:
            raise FieldError(f"{self.num_samples:,} is over the limit of {lim.max_samples:,} (DLVIZ_MAX_SAMPLES)", ("num_samples",))
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler) -> dict:
        common = {key: arg.json_schema() for key, arg in DATA_ARGS.items()}
        return {
            "title": "DataSpec",
            "description": "The dataset and its options; each dataset takes its own.",
            "oneOf": [
                {
                    "type": "object",
                    "title": name,
                    "description": entry.doc,
                    "properties": {"name": {"const": name}, **common, **{key: arg.json_schema() for key, arg in entry.args.items()}},
                    "required": ["name", *[key for key, arg in entry.args.items() if arg.required]],
                    "additionalProperties": False,
                }
                for name, entry in DATASETS.items()
            ],
        }


_OPTIONS = {key: arg for entry in DATASETS.values() for key, arg in entry.args.items()}  # a key's Arg differs by dataset
_DATA_OBJECTS = {"augment": Augment}
DataSpec = create_model(
    "DataSpec",
    __base__=_Data,
    __module__=__name__,
    **{key: (_checked(arg), arg.default) for key, arg in DATA_ARGS.items()},
    **{key: (Optional[_DATA_OBJECTS[key]] if arg.kind == "object" else Any, None) for key, arg in _OPTIONS.items()},
)


class _Training(Strict):
    """The training section: the fields of options.TRAINING, with the epochs within the server's limit."""

    @model_validator(mode="after")
    def _epochs(self):
        lim = _limits.current().max_epochs
        if self.epochs > lim:
            raise FieldError(f"{self.epochs} epochs is over the limit of {lim} (DLVIZ_MAX_EPOCHS)", ("epochs",))
        return self


TrainingSpec = arg_model("TrainingSpec", TRAINING, _Training, early_stopping=EarlyStopping)


PAGES = ("playground", "build", "train", "inspect", "vision", "landscape", "tune")
CONTROLS = ("gallery", "data", "loss", "optimizer", "schedule", "training")


class Classroom(Strict):
    """Pages and controls a teacher hides for a lesson (like TensorFlow Playground's *_hide flags)."""

    hide_pages: list[str] = []
    hide_controls: list[str] = []

    @field_validator("hide_pages", "hide_controls")
    @classmethod
    def _known(cls, v, info):
        known = PAGES if info.field_name == "hide_pages" else CONTROLS
        for i, name in enumerate(v):
            if name not in known:
                raise FieldError(f"unknown {info.field_name[5:-1]} {_cut(name)}{did_you_mean(name, known)}; choose from {', '.join(known)}", (i,))
        return v


class InitFrom(Strict):
    """Where the starting weights come from: a stored run's checkpoint (`run`, at the end of `epoch`, else its last), or
    the newest finished run of a gallery preset (`preset`). Entries whose names and shapes match are copied."""

    run: Optional[str] = Field(None, min_length=1, max_length=100)
    preset: Optional[str] = Field(None, min_length=1, max_length=100)
    epoch: Optional[int] = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.run is None) == (self.preset is None):
            raise FieldError('needs one of "run" (a run id) or "preset" (a gallery preset whose newest finished run is used)')
        return self


class Experiment(Strict):
    format: str
    name: str = Field("Untitled", max_length=200)
    description: str = Field("", max_length=2000)
    look_at: str = Field("", max_length=2000, description="what to look at: the lesson's note")
    seed: _checked(SEED) = SEED.default
    data: Optional[DataSpec] = None
    model: ModelSpec
    init_from: Optional[InitFrom] = None
    loss: Optional[LossSpec] = None
    optimizer: Optional[OptimizerSpec] = None
    schedule: Optional[ScheduleSpec] = None
    training: TrainingSpec = TrainingSpec()
    classroom: Optional[Classroom] = None

    @field_validator("format")
    @classmethod
    def _format(cls, v):
        if v != FORMAT:
            raise FieldError(f"unknown format {_cut(v)}; this dlviz reads {FORMAT}")
        return v

    @model_validator(mode="after")
    def _tbptt(self):
        """Truncated BPTT cuts a sequence into chunks read forward; a bidirectional layer also reads it backward."""
        if self.training.tbptt is not None:
            todo = list(self.model.layers)
            while todo:
                layer = todo.pop()
                todo += [child for _, group in layer.children() for child in group]
                if layer.args.get("bidirectional"):
                    raise FieldError(
                        f"truncated BPTT runs a sequence forward in chunks, but the {layer.type} layer is bidirectional; leave tbptt out or set bidirectional false",
                        ("training", "tbptt"),
                    )
        return self

    def to_dict(self, full: bool = False) -> dict:
        """The preset as a plain JSON-able dict (defaults left out unless `full`)."""
        out: dict[str, Any] = {"format": self.format, "name": self.name}
        for key in ("description", "look_at"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out["seed"] = self.seed
        if self.data is not None:
            out["data"] = self.data.model_dump(exclude_unset=not full, exclude_none=True)
        m = {"input_shape": list(self.model.input_shape)}
        if self.model.init is not None:
            m["init"] = self.model.init.to_dict(full)
        m["layers"] = [layer.to_dict(full) for layer in self.model.layers]
        out["model"] = m
        if self.init_from is not None:
            out["init_from"] = self.init_from.model_dump(exclude_none=True)
        for key in ("loss", "optimizer", "schedule"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).to_dict(full)
        out["training"] = self.training.model_dump(exclude_unset=not full, exclude_none=True)
        if self.classroom is not None:
            out["classroom"] = self.classroom.model_dump(exclude_defaults=not full)
        return out


# ---------------------------------------------------------------- parsing and validation


def _check_json_depth(text: str, limit: int) -> None:
    """Refuse documents nested deeper than `limit` before json.loads recurses into them."""
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                raise UserError(
                    "preset",
                    f"the document is nested more than {limit} levels deep; flatten it (DLVIZ_MAX_DEPTH limits blocks to {_limits.current().max_depth})",
                )
        elif ch in "]}":
            depth -= 1


def _max_json_depth() -> int:
    # a block level costs at most 3 JSON levels (block object, branches list, branch list) plus the top ones
    return 3 * _limits.current().max_depth + 8


def parse_text(text: str | bytes) -> "Experiment":
    """Parse and validate a preset document given as JSON text."""
    return validate(load_json(text))


def load_json(text: str | bytes) -> Any:
    """JSON text -> Python value, with the size and depth limits applied and one clear error."""
    lim = _limits.current()
    size = len(text.encode("utf-8", "replace") if isinstance(text, str) else text)
    if size > lim.max_document_bytes:
        raise UserError("preset", f"the preset is {size:,} bytes, over the limit of {lim.max_document_bytes:,} (DLVIZ_MAX_DOCUMENT_BYTES)")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError("preset", "the preset is not UTF-8 text; save it as a .json file") from None
    _check_json_depth(text, _max_json_depth())
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError("preset", f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except (RecursionError, ValueError) as e:
        raise UserError("preset", f"not valid JSON: {e}") from None


def _walk_limits(doc: Any) -> None:
    """Count layers and block depth iteratively, so hostile documents fail before pydantic recurses."""
    lim = _limits.current()
    stack = [(doc, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if "type" in node and isinstance(node.get("type"), str):
                seen += 1
                if node["type"] in BLOCKS:
                    depth += 1
                    if depth > lim.max_depth:
                        raise UserError("model.layers", f"blocks are nested more than {lim.max_depth} deep (DLVIZ_MAX_DEPTH); flatten the model")
            if seen > lim.max_layers:
                raise UserError("model.layers", f"the model has more than {lim.max_layers:,} layers, over the limit (DLVIZ_MAX_LAYERS)")
            stack.extend((v, depth) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth) for v in node if isinstance(v, (dict, list)))


def _container_depth(doc: Any, limit: int) -> None:
    stack = [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if d > limit:
            raise UserError("preset", f"the document is nested more than {limit} levels deep; flatten it")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((v, d + 1) for v in children if isinstance(v, (dict, list)))


def migrate(doc: dict) -> dict:
    """Bring an older preset up to the current format."""
    seen = set()
    while isinstance(doc, dict) and isinstance(doc.get("format"), str) and doc["format"] in MIGRATIONS and doc["format"] not in seen:
        seen.add(doc["format"])
        doc = MIGRATIONS[doc["format"]](doc)
    return doc


def validate(doc: Any) -> Experiment:
    """Validate a preset given as a Python value; raises UserError naming the first problem's JSON path."""
    if not isinstance(doc, dict):
        raise UserError("preset", f"a preset is a JSON object, got {_cut(doc)}")
    _container_depth(doc, _max_json_depth())
    doc = migrate(doc)
    if "model" in doc:
        _walk_limits(doc["model"])
    try:
        return Experiment.model_validate(doc)
    except ValidationError as e:
        raise _user_error(e) from None
    except RecursionError:
        raise UserError("preset", "the document is nested too deeply; flatten it") from None


def validate_model(model: Any) -> ModelSpec:
    """Validate only a `model` section (for code that builds without a whole preset)."""
    _walk_limits(model)
    try:
        return ModelSpec.model_validate(model)
    except ValidationError as e:
        raise _user_error(e, ("model",)) from None


def _user_error(e: ValidationError, prefix: tuple = ()) -> UserError:
    errs = e.errors(include_url=False)
    err = errs[0]
    loc = [*prefix, *err["loc"]]
    msg = err["msg"]
    exc = (err.get("ctx") or {}).get("error")
    if err["type"] == "value_error" and isinstance(exc, FieldError):
        loc.extend(exc.loc)
        msg = exc.message
    elif err["type"] == "missing":
        msg = "is required"
    else:
        msg = msg[0].lower() + msg[1:] if msg else "is not valid"
        if "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f", got {_cut(err['input'])}"
    more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
    return UserError(json_path(loc), msg + more)
