"""The app's search, a trial at a time (SteppedSearch): the same study, trials and losses as `sweep` gives for the same
space and seed, pruning by the same median rule, and a run that ends without a result failing its trial."""

import optuna
from test_search import tiny

from dlviz.preset.schema import validate
from dlviz.training.live import FeedCallback, LiveFeed
from dlviz.training.search import load_space, sweep
from dlviz.training.store import RunStore
from dlviz.training.trainer import Trainer
from dlviz.training.trials import SteppedSearch

SPACE = {"params": {"optimizer.lr": {"type": "log_uniform", "low": 1e-3, "high": 1.0}, "training.l2": {"type": "log_uniform", "low": 1e-6, "high": 1e-2}}}


def drive(search: SteppedSearch) -> None:
    """What the Tune page does with the Runner's workers, here in-process: ask, train, report the epochs, finish."""
    while (nxt := search.ask()) is not None:
        number, texp = nxt
        feed = LiveFeed()
        search.started(number, f"run-{number}")
        Trainer(texp, [FeedCallback(feed.handle)]).run()
        snap = feed.snapshot()
        search.finish(number, snap["result"], search.report(number, snap["epochs"]))


def test_a_stepped_search_gives_the_trials_and_losses_sweep_gives(tmp_path):
    exp = validate(tiny(epochs=2))
    space = load_space(SPACE, exp)
    stepped = SteppedSearch(exp, space, 4, storage=str(tmp_path / "a.sqlite"))
    drive(stepped)
    ref = sweep(exp, space, 4, storage=str(tmp_path / "b.sqlite"), store=RunStore(tmp_path / "runs.sqlite"))
    got = {t.number: (t.params, t.state, t.value) for t in stepped.results()}
    assert got == {t.number: (t.params, t.state, t.value) for t in ref.trials}
    assert stepped.done and stepped.best()[0].number == ref.best.number and stepped.best()[1] == ref.best_preset
    assert [t.run_id for t in stepped.results()] == [f"run-{n}" for n in range(4)]


def test_a_trial_whose_run_ends_without_a_result_fails_and_the_search_goes_on(tmp_path):
    exp = validate(tiny())
    search = SteppedSearch(exp, load_space(SPACE, exp), 2, storage=str(tmp_path / "o.sqlite"))
    number, _ = search.ask()
    failed = search.finish(number, None)
    assert failed.state == "failed" and "without a result" in failed.reason
    number, _ = search.ask()
    assert number == 1 and not search.done
    stopped = search.finish(number, {"status": "stopped", "reason": "the search was stopped"})
    assert stopped.state == "failed" and stopped.reason == "the search was stopped" and search.done


def test_a_trial_behind_the_median_is_pruned_as_sweep_prunes(tmp_path):
    exp = validate(tiny(epochs=3))
    search = SteppedSearch(exp, load_space(SPACE, exp), 7, storage=str(tmp_path / "o.sqlite"))
    for _ in range(5):  # MedianPruner's startup trials: complete, with losses near 0.5
        number, _ = search.ask()
        search.report(number, [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}])
        search.finish(number, {"status": "finished", "val_loss": 0.3, "epochs": 3})
    number, _ = search.ask()
    assert search.report(number, [{"epoch": 1, "val_loss": 0.45}]) == ""  # better than the median: trains on
    reason = search.report(number, [{"epoch": 1, "val_loss": 0.45}, {"epoch": 2, "val_loss": 9.0}])
    assert reason.startswith("pruned at epoch 2")
    assert search.finish(number, {"status": "stopped"}, reason).state == "pruned"
    states = [t.state for t in search.study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.PRUNED) == 1
