"""Edits of a preset's data, loss, optimizer, schedule and training sections, and the check that it can train."""
from __future__ import annotations

import copy
from typing import Any, Optional

from . import budget
from . import uploads
from .errors import UserError
from .registry import LOSSES, OPTIMIZERS, SCHEDULES
from .spec import COMMON_DATA_KEYS, Experiment, validate

TABLES = {"loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}


def set_dataset(doc: dict, name: str) -> dict:
    """Switch the dataset, keeping the split and batch settings and dropping options the new set does not take."""
    doc = copy.deepcopy(doc)
    old = doc.get("data") or {}
    data = {"name": name, **{k: v for k, v in old.items() if k in COMMON_DATA_KEYS and k != "name"}}
    doc["data"] = data
    return doc


def set_data_option(doc: dict, key: str, value: Any) -> dict:
    """Set one data option; None removes it (the dataset's default applies)."""
    doc = copy.deepcopy(doc)
    data = doc.setdefault("data", {"name": "spiral"})
    if value is None:
        data.pop(key, None)
    else:
        data[key] = value
    return doc


def set_typed(doc: dict, section: str, type_name: Optional[str]) -> dict:
    """Pick a loss, optimizer or schedule by name (None removes a schedule); required arguments get their defaults."""
    doc = copy.deepcopy(doc)
    if type_name is None:
        doc.pop(section, None)
        return doc
    entry = TABLES[section][type_name]
    new = {"type": type_name}
    old = doc.get(section) or {}
    for key, arg in entry.args.items():
        if key in old and old.get("type") != type_name and key == "lr":
            new[key] = old[key]  # keep the learning rate when switching optimizers
        elif arg.required:
            new[key] = _required_default(section, type_name, key)
    doc[section] = new
    return doc


def _required_default(section: str, type_name: str, key: str) -> Any:
    # the values a person would start from; the schema has no default for these
    return {("schedule", "StepLR", "step_size"): 10, ("schedule", "ExponentialLR", "gamma"): 0.95,
            ("schedule", "CosineAnnealingLR", "T_max"): 10, ("schedule", "OneCycleLR", "max_lr"): 0.01}.get((section, type_name, key), 1)


def set_typed_arg(doc: dict, section: str, key: str, value: Any) -> dict:
    """Set one argument of the loss, optimizer or schedule; the default value is written as no key at all."""
    doc = copy.deepcopy(doc)
    part = doc[section]
    arg = TABLES[section][part["type"]].args[key]
    if not arg.required and value == arg.default:
        part.pop(key, None)
    else:
        part[key] = value
    return doc


def set_training(doc: dict, key: str, value: Any) -> dict:
    """Set one key of the training section (None removes it); `seed` lives at the top of the preset."""
    doc = copy.deepcopy(doc)
    if key == "seed":
        doc["seed"] = value
        return doc
    training = doc.setdefault("training", {})
    if value is None:
        training.pop(key, None)
    else:
        training[key] = value
    return doc


def upload_name(data: bytes, filename: str, owner: str, now: Optional[float] = None) -> str:
    """Check an uploaded CSV and keep it for session `owner` (see uploads.store); returns the name for data.source.
    A table that cannot be read is refused before anything is written, so rejected files take no space."""
    from .data import read_csv_table

    uploads.check_size(len(data))
    read_csv_table(data)
    return uploads.store(data, filename, owner, now)


def require_sections(exp: Experiment) -> None:
    for key, what in (("data", "a data section"), ("loss", "a loss"), ("optimizer", "an optimizer")):
        if getattr(exp, key) is None:
            raise UserError(key, f"this preset has no {key} section; add {what} to train it")


def check_fit(exp: Experiment, input_shape: tuple, task: str, classes: Optional[int], target_shape: tuple):
    """The model must take the data's samples and the loss must fit its output and the targets; returns the Objective."""
    from .build import summarize
    from .losses import make_objective
    from .registry import shape_str

    if tuple(exp.model.input_shape) != tuple(input_shape):
        raise UserError("model.input_shape", f"the {exp.data.name} data gives {shape_str(input_shape)} per sample but the model's "
                                             f"input_shape is {shape_str(exp.model.input_shape)}; set it to {list(input_shape)}")
    summary = summarize(exp, count_flops=False)
    objective = make_objective(exp.loss, task, classes, target_shape, summary.output_shape)
    budget.check_training(budget.footprint(summary), exp.data.batch_size)
    return objective


def check_trainable(exp: Experiment, csv_bytes: Optional[bytes] = None) -> tuple[tuple, str, Optional[int], tuple]:
    """Refuse, with one sentence, a preset whose data, model and loss do not fit together; returns describe()'s answer."""
    from .data import describe

    require_sections(exp)
    info = describe(exp.data, csv_bytes)
    check_fit(exp, *info)
    return info


def fit_model_to_data(doc: dict, csv_bytes: Optional[bytes] = None) -> tuple[dict, str]:
    """Set the model's input shape to the data's and the last Linear's size to the number of outputs the loss needs.

    The result is accepted only when the model then takes the data (summarize and check_fit pass): otherwise nothing
    is changed and a UserError says what the person must change on Build."""
    from .data import describe
    from .spec import DataSpec

    original = doc
    doc = copy.deepcopy(doc)
    data = DataSpec.model_validate(doc["data"])
    input_shape, task, classes, target_shape = describe(data, csv_bytes)
    changes = []
    if doc["model"].get("input_shape") != list(input_shape):
        doc["model"]["input_shape"] = list(input_shape)
        changes.append(f"input_shape {list(input_shape)}")
    layers = doc["model"].get("layers", [])
    if len(input_shape) > 1 and layers and layers[0].get("type") == "Linear":
        # an MLP given images or sequences: it takes them flattened, as a person would write it
        layers.insert(0, {"type": "Flatten"})
        changes.append("a Flatten before the first Linear")
    loss = (doc.get("loss") or {}).get("type", "CrossEntropyLoss")
    if task == "classification":
        want = 1 if LOSSES[loss].target == "binary" else classes
    else:
        want = 1
        for n in target_shape:
            want *= n
    last = None
    for layer in doc["model"].get("layers", []):
        if layer.get("type") == "Linear":
            last = layer
    if last is not None and last.get("out_features") != want:
        last["out_features"] = want
        changes.append(f"the last Linear's out_features {want}")
    try:
        check_fit(validate(doc), input_shape, task, classes, target_shape)
    except UserError as err:
        from .registry import shape_str

        tried = f"even with {' and '.join(changes)}, " if changes else ""
        hint = " (a table of numbers needs a model that starts with Linear layers)" if len(input_shape) == 1 else ""
        raise UserError(err.path, f"the model was left as it was: {tried}its layers can't take the {data.name} data's "
                                  f"{shape_str(input_shape)} samples; {err.message}. "
                                  f"Change those layers on Build{hint}, or pick data shaped like the model's input "
                                  f"{shape_str(original['model'].get('input_shape') or [])}") from None
    return doc, ("Fitted the model to the data: " + ", ".join(changes) + ".") if changes else "The model already fits the data."


def trainable(doc: dict, csv_bytes: Optional[bytes] = None) -> Experiment:
    """Validate a preset dict and check that it can train: the one call behind the Train button."""
    exp = validate(doc)
    check_trainable(exp, csv_bytes)
    return exp
