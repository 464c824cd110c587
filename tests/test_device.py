"""DLVIZ_DEVICE: the setting's values and errors, everything on an explicit cpu, and, where torch finds a GPU, the same
training run, feature maps, receptive field and loss surface on cuda as on the CPU, within float tolerance."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from dlviz import limits
from dlviz.analysis import features, receptive, surface
from dlviz.errors import UserError
from dlviz.model.build import summarize
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.trainer import Callback, Trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

# a CNN with augmentation (its draws come from the CPU generator whatever the device) and no dropout (which on a GPU
# draws from CUDA's generator): a run on either device takes the same steps
CNN = {
    **gallery.raw("cnn-digits"),
    "data": {"name": "digits", "subset": 400, "batch_size": 32, "augment": {"hflip": True, "crop": 1, "noise": 0.05}},
    "training": {"epochs": 2},
}
MLP = {**gallery.raw("spiral-tanh"), "training": {"epochs": 3}}


# ---------------------------------------------------------------- the setting


@pytest.mark.parametrize("raw, expected", [("cpu", "cpu"), ("CPU", "cpu"), (" cpu ", "cpu")])
def test_cpu_is_cpu(raw, expected):
    assert limits.device({"DLVIZ_DEVICE": raw}) == expected


@pytest.mark.parametrize("env", [{}, {"DLVIZ_DEVICE": "auto"}, {"DLVIZ_DEVICE": ""}])
def test_auto_is_the_default_and_picks_a_gpu_when_torch_finds_one(env):
    assert limits.device(env) == ("cuda" if torch.cuda.is_available() else "cpu")


def test_auto_falls_back_to_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert limits.device({"DLVIZ_DEVICE": "auto"}) == "cpu"


@pytest.mark.parametrize("raw", ["gpu", "cuda:0", "mps", "1"])
def test_a_wrong_value_is_one_sentence_naming_the_setting(raw):
    with pytest.raises(UserError) as err:
        limits.device({"DLVIZ_DEVICE": raw})
    text = str(err.value)
    assert text.startswith("DLVIZ_DEVICE must be auto, cpu or cuda") and repr(raw) in text and "\n" not in text


def test_cuda_without_a_gpu_is_one_sentence_naming_the_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError) as err:
        limits.device({"DLVIZ_DEVICE": "cuda"})
    text = str(err.value)
    assert "DLVIZ_DEVICE is cuda" in text and "no CUDA GPU" in text and "\n" not in text


def test_the_environment_is_read_on_each_call(monkeypatch):
    monkeypatch.setenv("DLVIZ_DEVICE", "cpu")
    assert limits.device() == "cpu"
    monkeypatch.setenv("DLVIZ_DEVICE", "tpu")
    with pytest.raises(UserError, match="DLVIZ_DEVICE"):
        limits.device()


def test_a_trainer_refuses_a_wrong_setting_in_one_sentence(monkeypatch):
    monkeypatch.setenv("DLVIZ_DEVICE", "gpu")
    with pytest.raises(UserError, match="DLVIZ_DEVICE must be"):
        Trainer(validate(MLP))


# ---------------------------------------------------------------- everything on an explicit cpu


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setenv("DLVIZ_DEVICE", "cpu")


def test_training_on_cpu_keeps_its_numbers_and_its_checkpoints(on_cpu):
    exp = validate(MLP)
    t = Trainer(exp)
    assert t.device.type == "cpu" and t.data is t.dataset  # nothing copied on the CPU
    result = t.run()
    again = Trainer(exp, device="cpu").run()
    assert result == again  # bit-identical, as before the device setting
    state = t.state()
    assert all(v.device.type == "cpu" for v in state["model"].values())
    assert "cuda_rng" not in state


def test_feature_maps_receptive_fields_and_surfaces_run_on_cpu(on_cpu):
    exp = validate(CNN)
    net = features.load_model(exp)
    assert next(net.parameters()).device.type == "cpu"
    inp = features.noise_input(net, 3)
    maps = features.feature_maps(net, inp.x)
    assert maps and all(isinstance(m.values, np.ndarray) for m in maps)
    g = receptive.input_gradient(net, inp.x, "model.layers[3]", (1, 1), [0, 5])
    assert g.shape == (8, 8) and g.sum() > 0
    s = surface.network_surface(surface.make_problem(exp, samples=64), "random", 1.0, 5, seed=1)
    assert np.isfinite(s.loss).all()


# ---------------------------------------------------------------- cuda against the CPU


def _close(a, b, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


@CUDA
@pytest.mark.parametrize("doc", [MLP, CNN], ids=["mlp", "cnn-augmented"])
def test_a_short_run_on_cuda_matches_the_cpu(doc):
    exp = validate(doc)
    runs = {}
    for device in ("cpu", "cuda"):
        t = Trainer(exp, device=device)
        runs[device] = (t, t.run())
    (cpu, r_cpu), (gpu, r_gpu) = runs["cpu"], runs["cuda"]
    assert r_gpu["status"] == r_cpu["status"] == "finished"
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).is_cuda
    for a, b in zip(cpu.history, gpu.history):
        _close([a["train_loss"], a["val_loss"]], [b["train_loss"], b["val_loss"]], rtol=1e-3, atol=1e-4)
    # the checkpoint is in CPU memory and continues on the CPU
    state = gpu.state()
    assert all(v.device.type == "cpu" for v in state["model"].values())
    assert all(v.device.type == "cpu" for st in state["optimizer"]["state"].values() for v in st.values() if torch.is_tensor(v))
    for k, v in cpu.state()["model"].items():
        _close(v, state["model"][k], rtol=1e-3, atol=1e-4)
    resumed = Trainer(validate({**doc, "training": {"epochs": doc["training"]["epochs"] + 1}}), resume=copy.deepcopy(state), device="cpu")
    assert resumed.run()["status"] == "finished"


@CUDA
def test_a_run_continued_on_cuda_draws_the_dropout_masks_it_would_have_drawn():
    """Dropout draws from CUDA's generator on a GPU: the checkpoint keeps that generator's state too."""
    layers = MLP["model"]["layers"]
    exp = validate({**MLP, "model": {**MLP["model"], "layers": [*layers[:2], {"type": "Dropout", "p": 0.3}, *layers[2:]]}, "training": {"epochs": 4}})
    full = Trainer(exp, device="cuda").run()

    class StopAt2(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                trainer.control.stop()

    first = Trainer(exp, [StopAt2()], device="cuda")
    first.run()
    state = first.state()
    assert state["cuda_rng"].device.type == "cpu"
    continued = Trainer(exp, resume=state, device="cuda").run()
    _close([continued["train_loss"], continued["val_loss"]], [full["train_loss"], full["val_loss"]], rtol=1e-5, atol=1e-6)


@CUDA
def test_feature_maps_and_filters_on_cuda_match_the_cpu():
    exp = validate(CNN)
    state = Trainer(exp, device="cpu").state()  # any weights will do: the initial ones
    cpu, gpu = features.load_model(exp, state, device="cpu"), features.load_model(exp, state, device="cuda")
    assert next(gpu.parameters()).is_cuda
    inp = features.noise_input(cpu, 7)  # on the CPU: the computation moves it
    for a, b in zip(features.feature_maps(cpu, inp.x), features.feature_maps(gpu, inp.x)):
        assert a.path == b.path and isinstance(b.values, np.ndarray)
        _close(a.values, b.values)
    for a, b in zip(features.conv_filters(cpu), features.conv_filters(gpu)):
        _close(a.weight, b.weight, rtol=0, atol=0)


@CUDA
def test_a_receptive_field_on_cuda_matches_the_cpu():
    exp = validate(CNN)
    cpu, gpu = features.load_model(exp, device="cpu"), features.load_model(exp, device="cuda")
    x = features.noise_input(cpu, 1).x
    _close(receptive.input_gradient(cpu, x, "model.layers[3]", (2, 1), [0, 3, 7]), receptive.input_gradient(gpu, x, "model.layers[3]", (2, 1), [0, 3, 7]))
    summary = summarize(exp)
    for a, b in zip(receptive.growth(cpu, summary, x), receptive.growth(gpu, summary, x)):
        assert a.effective == b.effective


@CUDA
@pytest.mark.parametrize("doc", [MLP, CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("method", ["batched", "loop"])
def test_a_loss_surface_on_cuda_matches_the_cpu(doc, method):
    exp = validate(doc)
    cpu = surface.make_problem(exp, samples=128, device="cpu")
    gpu = surface.make_problem(exp, samples=128, device="cuda")
    assert gpu.x.is_cuda and next(gpu.model.parameters()).is_cuda
    a = surface.network_surface(cpu, "random", 1.0, 7, seed=2, method=method)
    b = surface.network_surface(gpu, "random", 1.0, 7, seed=2, method=method)
    _close(a.loss, b.loss)
    _close(a.center_loss, b.center_loss)
    # the line and the PCA plane take the run's initial weights and trajectory from the CPU (the store)
    initial = [w * 0.5 for w in cpu.weights()]
    snaps = (
        np.stack([surface.flatten(cpu.weights()).numpy() * f for f in (0.2, 0.5, 0.7, 1.0)])
        + np.random.default_rng(0).normal(size=(4, 1)).astype(np.float32) * 0.01
    )
    for mode, kwargs in (("line", {}), ("pca", {"steps": np.arange(4), "snapshots": snaps})):
        kw_cpu = {**kwargs, "initial": initial} if mode == "line" else kwargs
        kw_gpu = {**kwargs, "initial": [w.cuda() for w in initial]} if mode == "line" else kwargs
        a = surface.network_surface(cpu, mode, 0.5, 5, method=method, **kw_cpu)
        b = surface.network_surface(gpu, mode, 0.5, 5, method=method, **kw_gpu)
        _close(a.loss, b.loss, rtol=1e-3, atol=1e-5)


WORKER = textwrap.dedent("""
    import json, sys, time
    import torch
    from dlviz.preset.schema import validate
    from dlviz.training.runner import Runner
    from dlviz.training.store import RunStore
    if __name__ == "__main__":
        torch.zeros(1, device="cuda")  # a CUDA context in the server, as one computing a surface has
        runner = Runner(sys.argv[1])
        h = runner.start(validate(json.loads(sys.argv[2])), "device-test")
        while h.alive:
            time.sleep(0.1)
        state = RunStore(runner.store_path).load_checkpoint(h.run_id)
        cpu = all(v.device.type == "cpu" for v in state["model"].values())
        print(json.dumps({"status": h.feed.status, "reason": h.feed.reason, "result": h.feed.result, "cpu_checkpoint": cpu}))
""")


@CUDA
def test_a_worker_trains_on_cuda_and_stores_cpu_checkpoints(tmp_path):
    """A server of its own (the workers' forkserver keeps the environment it started with): its workers fork from a
    forkserver that never touched CUDA, so each makes its own CUDA context, while the server has one too."""
    script = tmp_path / "server.py"
    script.write_text(WORKER)
    env = {**os.environ, "DLVIZ_DEVICE": "cuda", "PYTHONPATH": os.getcwd()}
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs.sqlite"), json.dumps(MLP)], env=env, timeout=300, capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == "finished", got["reason"]
    assert got["cpu_checkpoint"]
    expected = Trainer(validate(MLP), device="cuda").run()
    _close(got["result"]["train_loss"], expected["train_loss"], rtol=1e-5, atol=1e-6)
