"""The preset format as JSON Schema, for editors that validate presets (`python -m dlviz schema`)."""

from __future__ import annotations

from dlviz.preset.registry import ACTIVATIONS, BIAS_CHOICES, INITS, LAYERS, LOSSES, OPTIMIZERS, SCHEDULES
from dlviz.preset.schema import Experiment


def json_schema() -> dict:
    """The preset format as JSON Schema (draft 2020-12), layers, inits and the typed sections included."""
    schema = Experiment.model_json_schema()
    schema["title"] = "dlviz preset"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    defs = schema.setdefault("$defs", {})
    ref = {"$ref": "#/$defs/LayerSpec"}
    layers = []
    common = {"name": {"type": "string", "maxLength": 80}, "init": {"$ref": "#/$defs/InitSpec"}, "trainable": {"type": "boolean"}}
    for name, entry in {**LAYERS, **ACTIVATIONS}.items():
        props = {"type": {"const": name}, **common, **{k: a.json_schema() for k, a in entry.args.items()}}
        layers.append(
            {
                "type": "object",
                "title": name,
                "description": entry.doc,
                "properties": props,
                "required": ["type", *[k for k, a in entry.args.items() if a.required]],
                "additionalProperties": False,
            }
        )
    lists = {"type": "array", "items": ref}
    block_props = {
        "Residual": {"body": lists, "shortcut": lists},
        "Concat": {"branches": {"type": "array", "items": lists, "minItems": 1}},
        "Sequential": {"layers": lists},
    }
    for name, props in block_props.items():
        layers.append(
            {
                "type": "object",
                "title": name,
                "properties": {"type": {"const": name}, **common, **props},
                "required": ["type", next(iter(props))],
                "additionalProperties": False,
            }
        )
    defs["LayerSpec"] = {"oneOf": layers}

    def typed(table, extra=None):
        options = []
        for name, entry in table.items():
            props = {"type": {"const": name}, **{k: a.json_schema() for k, a in entry.args.items()}, **(extra or {})}
            options.append(
                {
                    "type": "object",
                    "title": name,
                    "description": entry.doc,
                    "properties": props,
                    "required": ["type", *[k for k, a in entry.args.items() if a.required]],
                    "additionalProperties": False,
                }
            )
        return {"oneOf": options}

    init = typed(INITS, {"bias": {"enum": list(BIAS_CHOICES)}})
    init["oneOf"].insert(0, {"enum": list(INITS)})
    defs["InitSpec"] = init
    defs["LossSpec"] = typed(LOSSES)
    defs["OptimizerSpec"] = typed(OPTIMIZERS)
    defs["ScheduleSpec"] = typed(SCHEDULES)
    return schema
