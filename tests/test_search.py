"""Hyperparameter search: a space is checked like a preset, every trial is a run in the run store, a diverging trial
fails while the study goes on, the best trial's preset trains to the same loss on the command line, zoom narrows the
space, and processes share one study in PostgreSQL."""

import json
import math
import os
import subprocess
import sys

import optuna
import pytest
from conftest import postgres_schema

from dlviz.__main__ import main
from dlviz.errors import UserError
from dlviz.preset.schema import validate
from dlviz.training.search import best_preset, load_space, open_study, storage_url, sweep, zoom
from dlviz.training.store import RunStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(**training):
    return {
        "format": "dlviz-preset/1",
        "name": "tiny xor",
        "seed": 1,
        "data": {"name": "xor", "num_samples": 120, "noise": 0.1, "val_fraction": 0.25, "batch_size": 16},
        "model": {
            "input_shape": [2],
            "layers": [{"type": "Linear", "out_features": 8}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.1}, {"type": "Linear", "out_features": 2}],
        },
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "SGD", "lr": 0.1},
        "training": {"epochs": 1, **training},
    }


SPACE = {
    "params": {
        "optimizer.lr": {"type": "log_uniform", "low": 1e-3, "high": 1.0},
        "training.l2": {"type": "log_uniform", "low": 1e-6, "high": 1e-2},
        "model.layers[2].p": {"type": "uniform", "low": 0, "high": 0.5},
        "model.init": {"type": "categorical", "choices": ["xavier_uniform", "kaiming_normal"]},
        "optimizer.type": {"type": "categorical", "choices": ["SGD", "Adam"]},
        "training.epochs": {"type": "int", "low": 1, "high": 2},
    }
}


def error(params, exp=None) -> UserError:
    with pytest.raises(UserError) as e:
        load_space({"params": params}, exp or validate(tiny()))
    return e.value


def test_a_full_space_loads_in_its_order():
    space = load_space(SPACE, validate(tiny()))
    assert [p.path for p in space.params] == list(SPACE["params"])
    assert space.to_json() == SPACE


@pytest.mark.parametrize(
    "params, path, words",
    [
        ({"optimizer.lrr": {"type": "uniform", "low": 0, "high": 1}}, "space.params['optimizer.lrr']", "has no optimizer.lrr"),
        ({"model.layers[9].p": {"type": "uniform", "low": 0, "high": 1}}, "space.params['model.layers[9].p']", "has no model.layers[9].p"),
        ({"optimizer.lr": {"type": "log_uniform", "low": 0, "high": 1}}, "space.params['optimizer.lr'].low", "above 0"),
        ({"optimizer.lr": {"type": "log_uniform", "low": -1, "high": 1}}, "space.params['optimizer.lr'].low", "above 0"),
        ({"optimizer.lr": {"type": "uniform", "low": 0.5, "high": 0.5}}, "space.params['optimizer.lr'].high", "above low"),
        ({"optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1}}, "space.params['optimizer.lr'].type", "log_uniform"),
        ({"optimizer.lr": {"type": "uniform", "low": 1e-3}}, "space.params['optimizer.lr'].high", "required"),
        ({"model.layers[2].p": {"type": "uniform", "low": 0, "high": 2}}, "space.params['model.layers[2].p'].high", "invalid"),
        ({"data.batch_size": {"type": "uniform", "low": 8, "high": 64}}, "space.params['data.batch_size']", "integer"),
        ({"optimizer.type": {"type": "categorical", "choices": ["Adam", "Adamm"]}}, "space.params['optimizer.type'].choices[1]", "Adamm"),
        ({"optimizer..lr": {"type": "uniform", "low": 0, "high": 1}}, "space.params['optimizer..lr']", "not a path"),
    ],
)
def test_space_errors_name_their_path(params, path, words):
    e = error(params)
    assert e.path == path, str(e)
    assert words in e.message
    assert str(e).startswith(path + ": ")


def test_a_space_is_an_object_with_params():
    exp = validate(tiny())
    for doc, path in (([], "space"), ({"params": {}}, "space.params"), ({"params": SPACE["params"], "trials": 3}, "space.trials")):
        with pytest.raises(UserError) as e:
            load_space(doc, exp)
        assert e.value.path == path


def test_more_trials_than_the_limit_is_refused(tmp_path, monkeypatch):
    exp = validate(tiny())
    space = load_space(SPACE, exp)
    monkeypatch.setenv("DLVIZ_MAX_TRIALS", "3")
    with pytest.raises(UserError) as e:
        sweep(exp, space, 4, storage=str(tmp_path / "o.sqlite"), store=RunStore(tmp_path / "runs.sqlite"))
    assert e.value.path == "trials" and "DLVIZ_MAX_TRIALS" in e.value.message
    assert not (tmp_path / "o.sqlite").exists()  # refused before anything was made


def regression():
    """A linear regression that SGD blows up in three steps at a rate of 100."""
    return {
        "format": "dlviz-preset/1",
        "seed": 1,
        "data": {"name": "reg-plane", "num_samples": 120, "val_fraction": 0.25, "batch_size": 8},
        "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 8}, {"type": "Linear", "out_features": 1}]},
        "loss": {"type": "MSELoss"},
        "optimizer": {"type": "SGD", "lr": 0.01},
        "training": {"epochs": 1},
    }


def test_trials_are_runs_in_the_store_and_a_diverging_trial_fails_while_the_study_goes_on(tmp_path):
    exp = validate(regression())
    space = load_space({"params": {"optimizer.lr": {"type": "log_uniform", "low": 1e-3, "high": 0.05}}}, exp)
    storage = str(tmp_path / "optuna.sqlite")
    store = RunStore(tmp_path / "runs.sqlite")
    # the first trial takes a rate that makes SGD blow up (outside the space: Optuna runs an enqueued trial as given)
    open_study(space, exp, storage, "s").enqueue_trial({"optimizer.lr": 100.0}, skip_if_exists=False)
    seen = []
    with pytest.warns(UserWarning, match="out of range"):
        r = sweep(exp, space, 4, storage=storage, study_name="s", store=store, on_trial=seen.append)
    assert [t.number for t in r.trials] == [0, 1, 2, 3] and seen == r.trials
    first = r.trials[0]
    assert first.state == "failed" and first.value is None and "lower the learning rate" in first.reason
    assert store.run(first.run_id)["status"] == "diverged"
    runs = store.runs(session="sweep:s")
    assert sorted(runs["id"]) == sorted(t.run_id for t in r.trials)
    for t in r.trials:
        run = store.run(t.run_id)
        assert run["preset"]["optimizer"]["lr"] == pytest.approx(t.params["optimizer.lr"])
        if t.state == "complete":
            assert run["status"] == "finished" and run["result"]["val_loss"] == t.value
    study = optuna.load_study(study_name="s", storage=storage_url(storage))
    assert [t.state for t in study.trials][0] == optuna.trial.TrialState.FAIL
    assert [t.user_attrs["run_id"] for t in study.trials] == [t.run_id for t in r.trials]
    assert r.study_trials == 4


def test_the_best_trial_trains_to_the_same_loss_on_the_command_line(tmp_path, capsys):
    exp = validate(tiny())
    space = load_space(SPACE, exp)
    r = sweep(exp, space, 4, storage=str(tmp_path / "o.sqlite"), store=RunStore(tmp_path / "runs.sqlite"), seed=5)
    assert r.best is not None
    assert r.best.value == min(t.value for t in r.trials if t.value is not None)
    doc = best_preset(exp, space, r.best.params)
    assert doc == r.best_preset
    assert doc["optimizer"]["type"] == r.best.params["optimizer.type"] and doc["training"]["epochs"] == r.best.params["training.epochs"]
    path = tmp_path / "best.json"
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["train", str(path), "--json"]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["val_loss"] == r.best.value


def test_the_same_seed_draws_the_same_trials_and_another_seed_others(tmp_path):
    exp = validate(tiny())
    space = load_space({"params": {"optimizer.lr": SPACE["params"]["optimizer.lr"]}}, exp)
    store = RunStore(tmp_path / "runs.sqlite")
    runs = [sweep(exp, space, 2, storage=str(tmp_path / f"{i}.sqlite"), store=store, seed=s) for i, s in enumerate((0, 0, 1))]
    a, b, c = ([t.params["optimizer.lr"] for t in r.trials] for r in runs)
    assert a == b and a != c


def test_zoom_narrows_numeric_ranges_around_the_best_and_keeps_their_choices(tmp_path):
    exp = validate(tiny())
    space = load_space(SPACE, exp)
    storage = str(tmp_path / "o.sqlite")
    r = sweep(exp, space, 8, storage=storage, store=RunStore(tmp_path / "runs.sqlite"))
    study = optuna.load_study(study_name=r.study_name, storage=storage_url(storage))
    fine = zoom(space, study, top=0.25)
    done = sorted((t for t in r.trials if t.value is not None), key=lambda t: t.value)
    best = done[:2]
    for old, new in zip(space.params, fine.params):
        values = [t.params[old.path] for t in best]
        if old.type == "categorical":
            assert set(new.choices) == set(values) and set(new.choices) <= set(old.choices)
        else:
            assert old.low <= new.low <= min(values) and max(values) <= new.high <= old.high
            if old.type != "int":
                assert (new.high - new.low) < (old.high - old.low) or math.log(new.high / new.low) < math.log(old.high / old.low)
    load_space(fine.to_json(), exp)  # the zoomed space is a valid space
    assert fine.key() != space.key()


def test_unreachable_storage_is_one_sentence_and_exit_2(capsys):
    space = os.path.join(ROOT, "examples", "cnn-digits.space.json")
    assert main(["sweep", "xor", "--space", space, "--trials", "1", "--storage", "postgresql://u:secret@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "storage" in err and "secret" not in err and "Traceback" not in err


def test_cli_sweep_prints_a_line_per_trial_then_the_best(tmp_path, capsys):
    space = tmp_path / "s.space.json"
    space.write_text(json.dumps({"preset": "best.json", "params": {"optimizer.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5}}}))
    (tmp_path / "best.json").write_text(json.dumps(tiny()))  # the space's preset, beside it
    assert main(["sweep", "--space", str(space), "--trials", "2", "--storage", str(tmp_path / "o.sqlite"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [x["trial"] for x in lines[:2]] == [0, 1]
    assert lines[2]["trials"] == 2 and lines[2]["best"]["trial"] in (0, 1) and lines[2]["best_preset"]["name"] == "tiny xor"
    assert main(["sweep", "--space", str(tmp_path / "missing.json"), "--trials", "2"]) == 2
    assert "no space file" in capsys.readouterr().err


def test_cli_sweep_zoom_writes_the_next_stages_space_around_the_best_trials(tmp_path, capsys):
    space = tmp_path / "s.space.json"
    space.write_text(json.dumps({"preset": "best.json", "params": {"optimizer.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5}}}))
    (tmp_path / "best.json").write_text(json.dumps(tiny()))
    storage, nxt = str(tmp_path / "o.sqlite"), tmp_path / "next.space.json"
    assert main(["sweep", "--space", str(space), "--trials", "4", "--storage", storage, "--zoom", str(nxt), "--json"]) == 0
    best = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()][-1]["best"]["params"]["optimizer.lr"]
    narrowed = json.loads(nxt.read_text())
    lr = narrowed["params"]["optimizer.lr"]
    assert 0.01 <= lr["low"] <= best <= lr["high"] <= 0.5 and (lr["low"], lr["high"]) != (0.01, 0.5)
    assert narrowed["preset"] == str(tmp_path / "best.json")  # the space's preset, by a path that holds from anywhere
    assert main(["sweep", "--space", str(nxt), "--trials", "1", "--storage", storage]) == 0


def test_the_example_space_loads_against_its_gallery_preset():
    from dlviz.preset import gallery
    from dlviz.training.search import read_space

    doc = read_space(os.path.join(ROOT, "examples", "cnn-digits.space.json"))
    space = load_space(doc, gallery.resolve(doc["preset"]))
    assert {p.path for p in space.params} == {"optimizer.lr", "training.l2"}


def test_two_processes_share_one_study_in_postgresql(tmp_path):
    with postgres_schema() as url:
        (tmp_path / "p.json").write_text(json.dumps(tiny()))
        space = tmp_path / "s.space.json"
        space.write_text(
            json.dumps({"params": {"optimizer.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5}, "training.l2": SPACE["params"]["training.l2"]}})
        )
        env = {**os.environ, "DLVIZ_DATABASE_URL": url}  # the runs go to the same database
        cmd = [
            sys.executable,
            "-m",
            "dlviz",
            "sweep",
            str(tmp_path / "p.json"),
            "--space",
            str(space),
            "--trials",
            "4",
            "--storage",
            url,
            "--study",
            "shared",
            "--json",
        ]
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
        lines = [[json.loads(x) for x in out.strip().splitlines()] for out, _ in outs]
        numbers = [t["trial"] for ls in lines for t in ls[:-1]]
        assert sorted(numbers) == list(range(8))  # 4 + 4 trials, no number twice
        study = optuna.load_study(study_name="shared", storage=storage_url(url))
        assert len(study.trials) == 8
        best = study.best_trial
        again = optuna.load_study(study_name="shared", storage=storage_url(url)).best_trial
        assert (again.number, again.value) == (best.number, best.value)
        finals = [ls[-1] for ls in lines]
        assert all(f["best"]["val_loss"] >= best.value for f in finals)
        assert any(f["best"]["trial"] == best.number for f in finals)  # the process that finished last saw every trial
        store = RunStore(url)
        assert len(store.runs(session="sweep:shared")) == 8
        assert store.run(best.user_attrs["run_id"])["result"]["val_loss"] == best.value
        assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 8  # the processes drew apart
        store.close()


def test_tpe_runs_and_its_first_trials_are_drawn_per_trial_number(tmp_path):
    from dlviz.training.search import draw

    exp = validate(tiny())
    space = load_space({"params": {"optimizer.lr": SPACE["params"]["optimizer.lr"]}}, exp)
    r = sweep(exp, space, 3, storage=str(tmp_path / "o.sqlite"), store=RunStore(tmp_path / "runs.sqlite"), sampler="tpe", seed=2)
    dist = space.params[0].distribution()
    assert [t.params["optimizer.lr"] for t in r.trials] == [draw(2, n, "optimizer.lr", dist) for n in range(3)]
    with pytest.raises(UserError) as e:
        sweep(exp, space, 1, storage=str(tmp_path / "o.sqlite"), sampler="grid")
    assert e.value.path == "sampler"
