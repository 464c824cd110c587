"""Whether a preset can train: its sections present, its model taking its data, its loss fitting the model's output
and the targets, within the memory budget; and the one change that fits a model to its data."""

from __future__ import annotations

import copy
from typing import Optional

from dlviz.errors import UserError
from dlviz.model import budget
from dlviz.preset.registry import LOSSES
from dlviz.preset.schema import Experiment, validate


def require_sections(exp: Experiment) -> None:
    for key, what in (("data", "a data section"), ("loss", "a loss"), ("optimizer", "an optimizer")):
        if getattr(exp, key) is None:
            raise UserError(key, f"this preset has no {key} section; add {what} to train it")


def check_fit(exp: Experiment, input_shape: tuple, task: str, classes: Optional[int], target_shape: tuple):
    """The model must take the data's samples and the loss must fit its output and the targets; returns the Objective."""
    from dlviz.model.build import summarize
    from dlviz.preset.registry import shape_str
    from dlviz.training.losses import make_objective

    if tuple(exp.model.input_shape) != tuple(input_shape):
        raise UserError(
            "model.input_shape",
            f"the {exp.data.name} data gives {shape_str(input_shape)} per sample but the model's "
            f"input_shape is {shape_str(exp.model.input_shape)}; set it to {list(input_shape)}",
        )
    summary = summarize(exp, count_flops=False)
    if summary.trainable_params == 0:
        frozen = summary.total_params > 0
        raise UserError(
            "model.layers",
            "every layer with weights is frozen (trainable: false), so training has nothing to change; let at least one layer train"
            if frozen
            else "the model has no trainable parameters, so there is nothing to train; add a layer with weights, such as Linear or Conv2d",
        )
    objective = make_objective(exp.loss, task, classes, target_shape, summary.output_shape)
    budget.check_training(budget.footprint(summary), exp.data.batch_size)
    return objective


def check_trainable(exp: Experiment, csv_bytes: Optional[bytes] = None) -> tuple[tuple, str, Optional[int], tuple]:
    """Refuse, with one sentence, a preset whose data, model and loss do not fit together; returns describe()'s answer."""
    from dlviz.data.datasets import describe

    require_sections(exp)
    info = describe(exp.data, csv_bytes)
    check_fit(exp, *info)
    return info


def fit_model_to_data(doc: dict, csv_bytes: Optional[bytes] = None) -> tuple[dict, str]:
    """Set the model's input shape to the data's and the last Linear's size to the number of outputs the loss needs.

    The result is accepted only when the model then takes the data (summarize and check_fit pass): otherwise nothing
    is changed and a UserError says what the person must change on Build."""
    from dlviz.data.datasets import describe
    from dlviz.preset.schema import DataSpec

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
        want = {"binary": 1, "embedding": None}.get(LOSSES[loss].target, classes)  # an embedding keeps its size
    else:
        want = 1
        for n in target_shape:
            want *= n
    last = None
    for layer in doc["model"].get("layers", []):
        if layer.get("type") == "Linear":
            last = layer
    if last is not None and want is not None and last.get("out_features") != want:
        last["out_features"] = want
        changes.append(f"the last Linear's out_features {want}")
    try:
        check_fit(validate(doc), input_shape, task, classes, target_shape)
    except UserError as err:
        from dlviz.preset.registry import shape_str

        tried = f"even with {' and '.join(changes)}, " if changes else ""
        hint = " (a table of numbers needs a model that starts with Linear layers)" if len(input_shape) == 1 else ""
        raise UserError(
            err.path,
            f"the model was left as it was: {tried}its layers can't take the {data.name} data's "
            f"{shape_str(input_shape)} samples; {err.message}. "
            f"Change those layers on Build{hint}, or pick data shaped like the model's input "
            f"{shape_str(original['model'].get('input_shape') or [])}",
        ) from None
    return doc, ("Fitted the model to the data: " + ", ".join(changes) + ".") if changes else "The model already fits the data."


def trainable(doc: dict, csv_bytes: Optional[bytes] = None) -> Experiment:
    """Validate a preset dict and check that it can train: the one call behind the Train button."""
    exp = validate(doc)
    check_trainable(exp, csv_bytes)
    return exp
