"""Argument descriptions shared by the registries: how a value is checked, drawn as a widget and documented."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dlviz.errors import FieldError

REQUIRED = object()

FLOAT32_MAX = 3.4028234663852886e38


class ArgError(FieldError):
    """A value does not fit its Arg; the message is a sentence without the path, `loc` the key when there is one."""


def _num(kind: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgError(f"expected {'an integer' if kind == 'int' else 'a number'}, got {_show(v)}")
    if kind == "int" and not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            return int(v)
        raise ArgError(f"expected an integer, got {_show(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ArgError(f"expected a finite number, got {v}")
    if kind != "int" and abs(v) > FLOAT32_MAX:  # layers take their numbers as float32
        raise ArgError(f"expected a number between -3.4e38 and 3.4e38, got {v:g}")
    return v


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Arg:
    """One argument or option: a layer's constructor argument, a dataset's option, a training field.

    kind: int | float | bool | choice | choices (distinct values from `choices`, at least one) | text (at most
          `dims` characters) | object (a JSON object whose keys are the Args in `fields`) | size (int or list of
          `dims` ints) | ints (list of ints) | floats (list of `dims` numbers) | padding (size or 'same'/'valid') |
          number_or_list | points (a list of [x1, x2, label] rows: points clicked onto a 2-D plane, at most
          DLVIZ_MAX_SAMPLES, the coordinates within ±`le`).
    `dims` is the list length a list-valued kind accepts (0: any length, None: decided by the layer).
    The widget shows `label` (the key when empty) and steps by `step`; `widget` picks a drawing where a kind has two:
    "slider" for a number with both ends bounded, "toggle" for an object that is on or off.
    """

    kind: str
    default: Any = REQUIRED
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple = ()
    dims: int | None = None
    help: str = ""
    nullable: bool = field(default=False)
    label: str = ""
    step: float | None = None
    widget: str = ""
    fields: dict[str, "Arg"] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def _bounds(self, x: float) -> None:
        if self.ge is not None and x < self.ge:
            raise ArgError(f"must be at least {self.ge:g}, got {x:g}")
        if self.gt is not None and x <= self.gt:
            raise ArgError(f"must be greater than {self.gt:g}, got {x:g}")
        if self.le is not None and x > self.le:
            raise ArgError(f"must be at most {self.le:g}, got {x:g}")
        if self.lt is not None and x >= self.lt:
            raise ArgError(f"must be less than {self.lt:g}, got {x:g}")

    def _number(self, kind: str, v: Any):
        """One number of this argument, in range: an int, or a float for a float argument."""
        x = _num(kind, v)
        self._bounds(x)
        return x if kind == "int" else float(x)

    def validate(self, v: Any) -> Any:
        """Return the value in canonical form (lists for sizes) or raise ArgError."""
        if v is None:
            if self.nullable or self.default is None:
                return None
            raise ArgError("must not be null")
        k = self.kind
        if k in ("int", "float"):
            x = _num(k, v)
            self._bounds(x)
            return x if k == "int" else float(x)
        if k == "bool":
            if not isinstance(v, bool):
                raise ArgError(f"expected true or false, got {_show(v)}")
            return v
        if k == "choice":
            if v not in self.choices:
                from dlviz.errors import did_you_mean

                hint = did_you_mean(v, [c for c in self.choices if isinstance(c, str)]) if isinstance(v, str) else ""
                opts = ", ".join(repr(c) for c in self.choices)
                raise ArgError(f"{_show(v)} is not one of {opts}{hint}")
            return v
        if k == "choices":
            return self._choices(v)
        if k == "text":
            if not isinstance(v, str):
                raise ArgError(f"expected text, got {_show(v)}")
            if self.dims and len(v) > self.dims:
                raise ArgError(f"must be at most {self.dims} characters, got {len(v):,}")
            return v
        if k == "object":
            if not isinstance(v, dict):
                raise ArgError(f"expected an object, got {_show(v)}")
            return check_args(self.fields, v, defaults=False)
        if k == "points":
            return self._points(v)
        if k == "padding" and isinstance(v, str):
            if v not in ("same", "valid"):
                raise ArgError(f"padding must be a number, a list, 'same' or 'valid', got {_show(v)}")
            return v
        if k in ("size", "padding", "ints", "floats", "number_or_list"):
            num = "int" if k in ("size", "padding", "ints") else "float"
            if k in ("size", "padding", "number_or_list") and not isinstance(v, list):
                return self._number(num, v)
            if num == "int" and not isinstance(v, list):
                raise ArgError(f"expected a list of integers, got {_show(v)}")
            if not isinstance(v, list) or not v or (self.dims and len(v) != self.dims) or len(v) > 8:
                if num == "int":
                    want = f"{self.dims} integers" if self.dims else "1 to 8 integers"
                    raise ArgError(f"expected a number or a list of {want}, got {_show(v)}")
                want = f"a list of {self.dims} numbers" if self.dims else "a list of numbers"
                raise ArgError(f"expected {want}, got {_show(v)}")
            return [self._number(num, x) for x in v]
        raise AssertionError(f"unknown Arg kind {k}")

    def _points(self, v: Any) -> list:
        from dlviz import limits

        if not isinstance(v, list):
            raise ArgError(f"expected a list of [x1, x2, label] points, got {_show(v)}")
        cap = limits.current().max_samples
        if len(v) > cap:
            raise ArgError(f"holds {len(v):,} points, over the limit of {cap:,} (DLVIZ_MAX_SAMPLES); remove some")
        out = []
        for i, row in enumerate(v):
            if not isinstance(row, list) or len(row) != 3:
                raise ArgError(f"expected [x1, x2, label], got {_show(row)}", (i,))
            try:
                x1, x2, label = (_num("float", x) for x in row)
                for x in (x1, x2):
                    if abs(x) > self.le:
                        raise ArgError(f"must lie within ±{self.le:g}, got {x:g}")
            except ArgError as e:
                raise ArgError(e.message, (i,)) from None
            out.append([float(x1), float(x2), float(label)])
        return out

    def _choices(self, v: Any) -> list:
        if not isinstance(v, list) or not v:
            raise ArgError(f"expected a list of one or more of {', '.join(repr(c) for c in self.choices)}, got {_show(v)}")
        for i, x in enumerate(v):
            try:
                Arg("choice", choices=self.choices).validate(x)
            except ArgError as e:
                raise ArgError(e.message, (i,)) from None
        twice = next((x for i, x in enumerate(v) if x in v[:i]), None)
        if twice is not None:
            raise ArgError(f"lists {_show(twice)} twice")
        return list(v)

    def json_schema(self) -> dict:
        """JSON Schema for this argument, for editors and `python -m dlviz schema`."""
        bounds = {}
        for key, name in (("ge", "minimum"), ("le", "maximum"), ("gt", "exclusiveMinimum"), ("lt", "exclusiveMaximum")):
            if getattr(self, key) is not None:
                bounds[name] = getattr(self, key)
        k = self.kind
        if k == "int":
            s = {"type": "integer", **bounds}
        elif k == "float":
            s = {"type": "number", **bounds}
        elif k == "bool":
            s = {"type": "boolean"}
        elif k == "choice":
            s = {"enum": list(self.choices)}
        elif k == "choices":
            s = {"type": "array", "items": {"enum": list(self.choices)}, "minItems": 1, "uniqueItems": True}
        elif k == "text":
            s = {"type": "string", **({"maxLength": self.dims} if self.dims else {})}
        elif k == "points":
            coord = {"type": "number", "minimum": -self.le, "maximum": self.le}
            row = {"type": "array", "prefixItems": [coord, coord, {"type": "number"}], "minItems": 3, "maxItems": 3}
            s = {"type": "array", "items": row}
        elif k == "object":
            s = {"type": "object", "properties": {key: a.json_schema() for key, a in self.fields.items()}, "additionalProperties": False}
        elif k in ("size", "padding", "ints"):
            item = {"type": "integer", **bounds}
            arr = {"type": "array", "items": item, "minItems": self.dims or 1, "maxItems": self.dims or 8}
            s = arr if k == "ints" else {"anyOf": [item, arr]}
            if k == "padding":
                s["anyOf"].append({"enum": ["same", "valid"]})
        else:
            item = {"type": "number", **bounds}
            arr = {"type": "array", "items": item, "minItems": self.dims or 1, "maxItems": self.dims or 8}
            s = arr if k == "floats" else {"anyOf": [item, arr]}
        if self.nullable or self.default is None:
            s = {"anyOf": [s, {"type": "null"}]}
        if self.help:
            s["description"] = self.help
        if not self.required:
            s["default"] = self.default
        return s


def check_args(args: dict[str, Arg], given: dict, defaults: bool = True) -> dict:
    """Validate `given` against `args`; returns the checked values, with the defaults of the keys left out filled in
    unless `defaults` is false.

    Raises ArgError whose `loc` is the offending key (and the place inside its value)."""
    from dlviz.errors import did_you_mean

    out = {}
    for key in given:
        if key not in args:
            raise ArgError(f"unknown key '{key}'{did_you_mean(key, args)}", (key,))
    for key, arg in args.items():
        if key in given:
            try:
                out[key] = arg.validate(given[key])
            except ArgError as e:
                raise ArgError(e.message, (key, *e.loc)) from None
        elif arg.required:
            raise ArgError("is required", (key,))
        elif defaults:
            out[key] = arg.default
    return out
