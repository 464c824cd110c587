"""A hyperparameter search through dlviz's sweep against a bare Optuna loop that trains the same trials with the Trainer.

Ours: `sweep(...)`, as `python -m dlviz sweep` runs it: a study in an SQLite file, each trial a run written to the run
store (steps, epochs, telemetry, checkpoints), each epoch reported to the MedianPruner. The references: an Optuna study
with the same pruner, each trial enqueued with the values ours drew, trained by the Trainer on the same dataset with
only a callback that reports each epoch; once in memory (the bare loop: the ratio is the cost of the study's database,
the run store and the bookkeeping) and once in an SQLite file (a study others can join, as ours: the ratio is the run
store's cost and ours). Both sweeps are timed whole, study set-up included.

Measured 2026-12-06 on this project's shared 2-core machine (noisy): 20x3, 11 of 20 trials pruned, the same losses
both ways; 1.26 against the in-memory loop (6.8 s against 5.4 s: about 70 ms a trial for the study's database and the
run's telemetry and checkpoints), 1.03 against the loop on an SQLite study.

Prints JSON lines {"bench", "case", "ratio", ...}; ratio = our time / the reference's, measured side by side in this
run (lower is better; the goal is ≤ 1.1). Run: python bench/sweep.py [--quick]
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import optuna  # noqa: E402
import torch  # noqa: E402

from dlviz.data.datasets import load_dataset  # noqa: E402
from dlviz.preset import gallery  # noqa: E402
from dlviz.preset.schema import validate  # noqa: E402
from dlviz.training.search import apply, load_space, read_space, sweep  # noqa: E402
from dlviz.training.store import RunStore  # noqa: E402
from dlviz.training.trainer import Callback, Trainer  # noqa: E402

QUICK = "--quick" in sys.argv
TRIALS, EPOCHS, REPEATS = (4, 1, 1) if QUICK else (20, 3, 2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def preset():
    doc = gallery.raw("cnn-digits")
    doc["training"] = {**doc.get("training", {}), "epochs": EPOCHS}
    return validate(doc)


class Report(Callback):
    def __init__(self, trial):
        self.trial = trial
        self.pruned = False

    def on_epoch_end(self, trainer, record):
        if math.isfinite(record["val_loss"]):
            self.trial.report(record["val_loss"], record["epoch"])
            if trainer.epoch < trainer.exp.training.epochs and self.trial.should_prune():
                self.pruned = True
                trainer.control.stop("pruned")


def bare(exp, params_list, dataset, storage=None) -> tuple[float, list]:
    t0 = time.perf_counter()
    study = optuna.create_study(storage=storage, direction="minimize", pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0))
    for params in params_list:
        study.enqueue_trial(params)

    def objective(trial):
        texp = validate(apply(exp, {k: trial.suggest_float(k, 1e-12, 1e12, log=True) for k in params_list[0]}))
        rep = Report(trial)
        out = Trainer(texp, [rep], dataset=dataset).run()
        if rep.pruned:
            raise optuna.TrialPruned()
        return out["val_loss"]

    study.optimize(objective, n_trials=len(params_list))
    return time.perf_counter() - t0, [t.value if t.state == optuna.trial.TrialState.COMPLETE else None for t in study.trials]


def ours(exp, space, folder: str, name: str):
    t0 = time.perf_counter()
    store = RunStore(os.path.join(folder, "runs.sqlite"))
    r = sweep(exp, space, TRIALS, storage=os.path.join(folder, "optuna.sqlite"), study_name=name, store=store, seed=0)
    took = time.perf_counter() - t0
    store.close()
    return took, r


def main() -> None:
    exp = preset()
    space = load_space(read_space(os.path.join(ROOT, "examples", "cnn-digits.space.json")), exp)
    dataset = load_dataset(exp.data, exp.seed)
    cases = {"memory": "bare Optuna, in-memory study", "sqlite": "bare Optuna, study in an SQLite file"}
    best = {"ours": math.inf, "memory": math.inf, "sqlite": math.inf}
    same = True
    with tempfile.TemporaryDirectory() as folder:
        Trainer(exp, dataset=dataset).run()  # warm: imports, allocator, first-call costs
        for i in range(REPEATS):
            t_ours, r = ours(exp, space, folder, f"bench-{i}")
            best["ours"] = min(best["ours"], t_ours)
            params = [t.params for t in r.trials]
            for kind in ("memory", "sqlite"):
                storage = f"sqlite:///{folder}/bare-{i}.sqlite" if kind == "sqlite" else None
                took, values = bare(exp, params, dataset, storage)
                best[kind] = min(best[kind], took)
                # the same trials: the same losses, and the same ones pruned (no loss in either)
                same &= all((a is None) == (b is None) and (a is None or a == b) for a, b in zip((t.value for t in r.trials), values))
    for kind, what in cases.items():
        print(
            json.dumps(
                {
                    "bench": "sweep",
                    "case": f"{TRIALS}x{EPOCHS} digits CNN vs {what}",
                    "ratio": round(best["ours"] / best[kind], 3),
                    "ours_s": round(best["ours"], 2),
                    "reference_s": round(best[kind], 2),
                    "trials": TRIALS,
                    "pruned": sum(t.state == "pruned" for t in r.trials),
                    "same_losses": same,
                    "repeats": REPEATS,
                }
            )
        )


if __name__ == "__main__":
    main()
