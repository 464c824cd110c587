"""Starting a preset from a stored run's weights (init_from): the checkpoint found through the run store, the state-dict
entries whose names and shapes match copied, and one sentence that says what was copied and what starts new."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

from torch import nn

from dlviz.errors import UserError, did_you_mean
from dlviz.preset.schema import Experiment, InitFrom
from dlviz.runtime import load_matching


@dataclass
class Transfer:
    """What init_from gave a model: where the weights came from, and the state-dict entries copied and left new."""

    source: str  # "run <id> at epoch 3"
    run_id: str
    step: int
    copied: list[str]
    new: list[str]
    labels: dict[str, str]  # state-dict name -> preset label ("layers.0.weight" -> "layers[0].weight")

    def layers(self, names: list[str]) -> str:
        """The preset layers the named entries belong to, each once, in order."""
        seen = dict.fromkeys(self.labels[n].rpartition(".")[0] or self.labels[n] for n in names)
        return ", ".join(seen)

    def message(self) -> str:
        if not self.new:
            return f"Starts from {self.source}: all {len(self.copied)} weight tensors copied."
        return f"Starts from {self.source}: copied {self.layers(self.copied)}; new (initialized as the preset says): {self.layers(self.new)}."


def find_checkpoint(spec: InitFrom, store=None) -> tuple[str, str, dict]:
    """(a description of the source, its run id, the checkpoint's state) for what init_from names, from the run store
    (the app's own unless `store` is given). Raises UserError with one sentence when it is not there."""
    from dlviz.training.store import RunStore

    own = store is None
    store = RunStore() if own else store
    try:
        run_id = spec.run if spec.run is not None else _newest_run(spec.preset, store)
        try:
            store.run(run_id)
        except UserError:
            raise UserError("init_from.run", f"no run with id {run_id} in the run store; train it first or pick a run on the Train page") from None
        ckpts = store.checkpoints(run_id)
        if not len(ckpts):
            raise UserError("init_from.run", f"run {run_id} saved no checkpoint, so it has no weights to start from; train it to the end of an epoch")
        if spec.epoch is None:
            step, epoch = int(ckpts["step"].iloc[-1]), int(ckpts["epoch"].iloc[-1])
        else:
            at = ckpts[ckpts["epoch"] == spec.epoch]
            if not len(at):
                have = ", ".join(str(e) for e in sorted(set(ckpts["epoch"].tolist())))
                raise UserError("init_from.epoch", f"run {run_id} has no checkpoint at epoch {spec.epoch}; it has epochs {have}")
            step, epoch = int(at["step"].iloc[-1]), spec.epoch
        state = store.load_checkpoint(run_id, step)  # torch.load(weights_only=True): never unpickled
    finally:
        if own:
            store.close()
    what = f"the newest finished run of '{spec.preset}' ({run_id})" if spec.preset is not None else f"run {run_id}"
    return f"{what} at epoch {epoch}", run_id, state


def _newest_run(preset: str, store) -> str:
    """The id of the newest finished run of a gallery preset, found by the preset's title."""
    from dlviz.preset import gallery

    if preset not in gallery.names():
        raise UserError("init_from.preset", f"no gallery preset named '{preset}'{did_you_mean(preset, gallery.names())}")
    title = gallery.load(preset).name
    runs = store.runs()
    done = runs[(runs["name"] == title) & (runs["status"] == "finished")] if len(runs) else runs
    if not len(done):
        raise UserError(
            "init_from.preset",
            f"the run store has no finished run of the lesson '{title}'; train that lesson first (on the Train page, or `python -m dlviz train {preset} --save`)",
        )
    return str(done["id"].iloc[0])  # the store lists the newest first


def start_from(model: nn.Module, exp: Experiment, store=None) -> Transfer:
    """Copy into `model` (built from `exp`) the weights of the checkpoint exp.init_from names, entries matched by name
    and shape; the others keep their initial values. Raises UserError when nothing matches."""
    from dlviz.training.trainer import param_label

    source, run_id, state = find_checkpoint(exp.init_from, store)
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise UserError("init_from", f"the checkpoint of {source} holds no model weights")
    copied, new = load_matching(model, weights)
    labels = {name: param_label(model, name) for name in (*copied, *new)}
    if not copied:
        own = model.state_dict()
        same_name = [n for n in weights if n in own]
        if same_name:
            n = same_name[0]
            detail = (
                f"{len(same_name)} entries match in name only, their shapes differ "
                f"({labels[n]} is {list(weights[n].shape)} there and {list(own[n].shape)} here)"
            )
        else:
            detail = f"none of its {len(weights)} entries has a name of this model"
        raise UserError("init_from", f"{source} is a different architecture: no weights match this model in name and shape; {detail}")
    return Transfer(source, run_id, int(state.get("step", 0)), copied, new, labels)


def plan(exp: Experiment, store=None) -> Optional[Transfer]:
    """What init_from would copy into the preset's model (None without init_from), on a model built on the meta device:
    for the Train page to say before the run starts. Raises UserError as start_from does."""
    from dlviz.model.build import build_model

    if exp.init_from is None:
        return None
    with warnings.catch_warnings():  # copying into meta tensors is a no-op torch warns about: only the names count here
        warnings.simplefilter("ignore", UserWarning)
        return start_from(build_model(exp, device="meta"), exp, store)
