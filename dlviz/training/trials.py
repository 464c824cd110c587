"""A search driven a trial at a time from outside Optuna's loop: the app runs each trial as an ordinary run in the
Runner's worker processes, within its caps, so a search never takes more than its person's share of the server. The
study, the space, the pruner and the objective are search.py's, so a trial here ends as it would under `dlviz sweep`."""

from __future__ import annotations

import math
from typing import Optional

import optuna

from dlviz.errors import UserError
from dlviz.preset.schema import Experiment, validate
from dlviz.training.search import FINISHED, Space, apply, best_preset, check_trials, open_study, trial_result


class SteppedSearch:
    """One study, asked for a trial, told its epochs and told how it ended, by a caller that trains it elsewhere."""

    def __init__(self, exp: Experiment, space: Space, trials: int, storage: Optional[str] = None, study_name: Optional[str] = None, sampler: str = "random"):
        check_trials(trials)
        if exp.data is None or exp.data.val_fraction <= 0:
            raise UserError("data.val_fraction", "a search ranks trials by their validation loss: give the preset a validation split above 0")
        self.exp, self.space, self.trials = exp, space, trials
        self.study = open_study(space, exp, storage, study_name, sampler)
        self.dists = {p.path: p.distribution() for p in space.params}
        self.asked = 0
        self.open: dict[int, tuple[optuna.trial.Trial, int]] = {}  # trial number -> (trial, epochs reported)

    @property
    def done(self) -> bool:
        return self.asked >= self.trials and not self.open

    def ask(self) -> Optional[tuple[int, Experiment]]:
        """The next trial's number and preset; None when this search has asked for all its trials. A sampled preset
        that does not validate fails its trial at once, and the next is asked."""
        while self.asked < self.trials:
            self.asked += 1
            trial = self.study.ask(self.dists)
            try:
                texp = validate(apply(self.exp, trial.params))
            except UserError as e:
                trial.set_user_attr("reason", str(e))
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self.open[trial.number] = (trial, 0)
            return trial.number, texp
        return None

    def started(self, number: int, run_id: str) -> None:
        self.open[number][0].set_user_attr("run_id", run_id)

    def report(self, number: int, epochs: list[dict]) -> str:
        """Report the epochs' validation losses not reported yet; the pruner's reason to stop the trial, or ""."""
        trial, seen = self.open[number]
        for record in epochs[seen:]:
            value = record.get("val_loss")
            if value is not None and math.isfinite(value):
                trial.report(float(value), int(record["epoch"]))
        self.open[number] = (trial, len(epochs))
        if len(epochs) > seen and len(epochs) < self.exp_epochs(trial) and trial.should_prune():
            return f"pruned at epoch {len(epochs)}: its validation loss was above the median of the trials before it"
        return ""

    def exp_epochs(self, trial) -> int:
        return int(trial.params.get("training.epochs", self.exp.training.epochs))

    def finish(self, number: int, result: Optional[dict], pruned: str = ""):
        """Tell the study how the trial's run ended (its final result, as `train --json`'s last line, or None when it
        ended without one); returns the trial's TrialResult."""
        trial, _ = self.open.pop(number)
        result = result or {}
        trial.set_user_attr("epochs", int(result.get("epochs", 0)))
        value = result.get("val_loss")
        if pruned:
            trial.set_user_attr("reason", pruned)
            frozen = self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif result.get("status") == "finished" and value is not None and math.isfinite(value):
            frozen = self.study.tell(trial, float(value))
        else:
            trial.set_user_attr("reason", result.get("reason") or f"the run ended {result.get('status', 'without a result')}")
            frozen = self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return trial_result(frozen)

    def results(self) -> list:
        return [trial_result(t) for t in self.study.get_trials(deepcopy=False, states=FINISHED)]

    def best(self) -> Optional[tuple]:
        """(the best complete trial's TrialResult, its preset document), or None before one completes."""
        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not done:
            return None
        best = min(done, key=lambda t: t.value)
        return trial_result(best), best_preset(self.exp, self.space, best.params)
