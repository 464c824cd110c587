"""Edits of a preset's data, loss, optimizer, schedule and training sections."""

from __future__ import annotations

import copy
from typing import Any, Optional

from dlviz.preset.args import Arg
from dlviz.preset.options import DATA_ARGS, TRAINING, data_option
from dlviz.preset.registry import LOSSES, OPTIMIZERS, SCHEDULES

TABLES = {"loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}


def set_dataset(doc: dict, name: str) -> dict:
    """Switch the dataset, keeping the split and batch settings and dropping options the new set does not take."""
    doc = copy.deepcopy(doc)
    old = doc.get("data") or {}
    data = {"name": name, **{k: v for k, v in old.items() if k in DATA_ARGS}}
    doc["data"] = data
    return doc


def _put(section: dict, key: str, value: Any, arg: Optional[Arg]) -> None:
    """Write one key of a section; None or the Arg's default is written as no key at all (the default applies)."""
    if value is None or (arg is not None and not arg.required and value == arg.default):
        section.pop(key, None)
    else:
        section[key] = value


def set_data_option(doc: dict, key: str, value: Any) -> dict:
    """Set one data option; None or the dataset's default removes it."""
    doc = copy.deepcopy(doc)
    data = doc.setdefault("data", {"name": "spiral"})
    _put(data, key, value, data_option(data.get("name"), key))
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
    return {
        ("schedule", "StepLR", "step_size"): 10,
        ("schedule", "ExponentialLR", "gamma"): 0.95,
        ("schedule", "CosineAnnealingLR", "T_max"): 10,
        ("schedule", "OneCycleLR", "max_lr"): 0.01,
    }.get((section, type_name, key), 1)


def set_typed_arg(doc: dict, section: str, key: str, value: Any) -> dict:
    """Set one argument of the loss, optimizer or schedule; the default value is written as no key at all."""
    doc = copy.deepcopy(doc)
    part = doc[section]
    _put(part, key, value, TABLES[section][part["type"]].args[key])
    return doc


def set_training(doc: dict, key: str, value: Any) -> dict:
    """Set one key of the training section (None or its default removes it); `seed` lives at the top of the preset."""
    doc = copy.deepcopy(doc)
    if key == "seed":
        doc["seed"] = value
        return doc
    _put(doc.setdefault("training", {}), key, value, TRAINING.get(key))
    return doc
