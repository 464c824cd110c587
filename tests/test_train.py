"""The trainer against independent references: torch.optim loops, direct computations, and its own promises."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from dlviz.errors import UserError
from dlviz.preset.registry import OPTIMIZERS
from dlviz.preset.schema import validate
from dlviz.training.trainer import Callback, Trainer


def preset(**over):
    doc = {
        "format": "dlviz-preset/1",
        "name": "t",
        "seed": 3,
        "data": {"name": "circle", "num_samples": 200, "noise": 0.1, "val_fraction": 0.2, "batch_size": 16},
        "model": {
            "input_shape": [2],
            "layers": [
                {"type": "Linear", "out_features": 8},
                {"type": "Tanh"},
                {"type": "Linear", "out_features": 8},
                {"type": "ReLU"},
                {"type": "Linear", "out_features": 2},
            ],
        },
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "SGD", "lr": 0.1},
        "training": {"epochs": 2},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return validate(doc)


class Recorder(Callback):
    def __init__(self):
        self.blocks, self.epochs, self.telemetry = [], [], []

    def on_steps(self, trainer, block):
        self.blocks.append(block)

    def on_epoch_end(self, trainer, record):
        self.epochs.append(record)

    def on_telemetry(self, trainer, snapshot):
        self.telemetry.append(snapshot)


def _batches(trainer, steps):
    """The exact batches the trainer will draw: same seeded permutation per epoch."""
    g = torch.Generator().manual_seed(trainer.exp.seed)
    n, bs = len(trainer.dataset.x_train), trainer.exp.data.batch_size
    out = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=g)
        out += [perm[i : i + bs] for i in range(0, n, bs)]
    return out[:steps]


OPT_ARGS = {
    "SGD": [{"lr": 0.1}, {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}],
    "Adagrad": [{"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}],
    "Adadelta": [{"lr": 1.0, "rho": 0.8}],
    "RMSprop": [{"lr": 0.01, "momentum": 0.5, "centered": True}],
    "Adam": [{"lr": 0.01}, {"lr": 0.01, "amsgrad": True, "betas": [0.8, 0.99], "weight_decay": 0.01}],
    "AdamW": [{"lr": 0.01, "weight_decay": 0.1}],
    "NAdam": [{"lr": 0.01}],
    "RAdam": [{"lr": 0.01}],
    "Adamax": [{"lr": 0.01}],
}


def test_every_optimizer_is_listed():
    assert set(OPT_ARGS) == set(OPTIMIZERS)


@pytest.mark.parametrize("name,args", [(n, a) for n, variants in OPT_ARGS.items() for a in variants])
def test_first_five_updates_equal_torch_optim(name, args):
    exp = preset(optimizer={"type": name, **args}, training={"epochs": 1, "telemetry_every": 1000})
    tr = Trainer(exp)
    ref = copy.deepcopy(tr.model)
    torch_args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    opt = getattr(torch.optim, name)(ref.parameters(), **torch_args)
    batches = _batches(tr, 5)
    ds = tr.dataset
    for idx in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(ref(ds.x_train[idx]), ds.y_train[idx]).backward()
        opt.step()
    tr.stop_after_steps = 5
    tr.run()
    assert tr.step == 5
    for (n1, p1), (n2, p2) in zip(tr.model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0, msg=f"{name} {n1}")


def test_l1_l2_penalties_add_to_the_gradient():
    exp = preset(training={"epochs": 1, "l1": 0.01, "l2": 0.02, "telemetry_every": 1000}, optimizer={"type": "SGD", "lr": 0.1})
    tr = Trainer(exp)
    ref = copy.deepcopy(tr.model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    idx = _batches(tr, 1)[0]
    ds = tr.dataset
    out = ref(ds.x_train[idx])
    weights = [p for p in ref.parameters() if p.dim() >= 2]
    loss = nn.functional.cross_entropy(out, ds.y_train[idx]) + 0.01 * sum(w.abs().sum() for w in weights) + 0.02 * sum((w**2).sum() for w in weights)
    opt.zero_grad()
    loss.backward()
    opt.step()
    tr.stop_after_steps = 1
    tr.run()
    for p1, p2 in zip(tr.model.parameters(), ref.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-6, atol=1e-7)


def _adam_by_hand(model, ds, batches, lr, grad_of, decoupled=0.0, betas=(0.9, 0.999), eps=1e-8):
    """Adam written out from Kingma & Ba's Algorithm 1 on the gradients grad_of(param, grad) gives; decoupled > 0 adds AdamW's decay."""
    b1, b2 = betas
    params = list(model.parameters())
    m, v = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    for t, idx in enumerate(batches, 1):
        model.zero_grad()
        nn.functional.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx]).backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                g = grad_of(p, p.grad)
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                p.mul_(1 - lr * decoupled)
                p.sub_(lr * (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps))
    return model


def test_adam_weight_decay_and_l2_penalty_equal_hand_written_adam():
    lr, lam = 0.01, 0.5
    runs = {
        # l2 = λ puts λ·Σw² in the loss: 2λw joins the gradient of the weights only
        "l2": ({"type": "Adam", "lr": lr}, {"l2": lam}, lambda p, g: g + 2 * lam * p if p.dim() >= 2 else g, 0.0),
        # torch.optim.Adam adds weight_decay·p to the gradient of every parameter, biases included
        "decay": ({"type": "Adam", "lr": lr, "weight_decay": 2 * lam}, {}, lambda p, g: g + 2 * lam * p, 0.0),
        # AdamW shrinks the parameters outside the gradient statistics
        "AdamW": ({"type": "AdamW", "lr": lr, "weight_decay": 2 * lam}, {}, lambda p, g: g, 2 * lam),
    }
    after_one = {}
    for name, (optimizer, training, grad_of, decoupled) in runs.items():
        for steps in (3, 1):
            tr = Trainer(preset(optimizer=optimizer, training={"epochs": 1, "telemetry_every": 1000, **training}))
            init = copy.deepcopy(tr.model)
            ref = _adam_by_hand(copy.deepcopy(init), tr.dataset, _batches(tr, steps), lr, grad_of, decoupled)
            tr.stop_after_steps = steps
            tr.run()
            for (n, p), r in zip(tr.model.named_parameters(), ref.parameters()):
                torch.testing.assert_close(p, r, rtol=1e-6, atol=1e-6, msg=f"{name} after {steps} steps: {n}")
        after_one[name] = list(tr.model.parameters())
    # Adam's first step moves each parameter by lr·g/(|g| + ε) ≈ lr·sign(g). So with weight_decay = 2λ every weight
    # moves as under l2 = λ, and a bias (which l2 leaves alone) moves lr·|sign(g + 2λb) − sign(g)| apart: 2·lr where
    # the decay flips its gradient's sign. AdamW's step is lr·sign(g) plus the shrink by (1 − lr·2λ), for every parameter.
    ds = tr.dataset
    init.zero_grad()
    idx = _batches(tr, 1)[0]
    nn.functional.cross_entropy(init(ds.x_train[idx]), ds.y_train[idx]).backward()
    flipped = 0
    for (n, p0), l2, decay, adamw in zip(init.named_parameters(), *after_one.values()):
        g, p0 = p0.grad, p0.detach()
        if p0.dim() >= 2:
            torch.testing.assert_close(decay, l2, rtol=0, atol=1e-6, msg=n)
        else:
            apart = lr * (torch.sign(g + 2 * lam * p0) - torch.sign(g)).abs()
            flipped += int((apart > lr).sum())
            torch.testing.assert_close((decay - l2).abs(), apart, rtol=0, atol=1e-5, msg=n)
        torch.testing.assert_close(adamw, p0 * (1 - lr * 2 * lam) - lr * torch.sign(g), rtol=0, atol=1e-5, msg=n)
    assert flipped > 0  # the biases do tell the coupled decay from the penalty


def test_max_norm_constraint_holds_after_every_step():
    tr = Trainer(preset(optimizer={"type": "SGD", "lr": 5.0}, training={"epochs": 2, "max_norm": 0.5}))
    tr.run()
    for w in tr.weights:
        assert w.detach().flatten(1).norm(dim=1).max() <= 0.5 + 1e-5


def test_gradient_clipping_matches_clip_grad_norm():
    exp = preset(optimizer={"type": "SGD", "lr": 0.5}, training={"epochs": 1, "grad_clip": 0.05, "telemetry_every": 1000})
    tr = Trainer(exp)
    ref = copy.deepcopy(tr.model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    ds = tr.dataset
    for idx in _batches(tr, 3):
        opt.zero_grad()
        nn.functional.cross_entropy(ref(ds.x_train[idx]), ds.y_train[idx]).backward()
        nn.utils.clip_grad_norm_(ref.parameters(), 0.05)
        opt.step()
    tr.stop_after_steps = 3
    tr.run()
    for p1, p2 in zip(tr.model.parameters(), ref.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)


def test_early_stopping_stops_and_restores_the_best_weights():
    # a rate this high makes the validation loss bounce: patience 2 must stop well before 40 epochs
    exp = preset(optimizer={"type": "SGD", "lr": 3.0, "momentum": 0.9}, training={"epochs": 40, "early_stopping": {"patience": 2}})
    rec = Recorder()
    tr = Trainer(exp, [rec])
    result = tr.run()
    vals = [r["val_loss"] for r in rec.epochs]
    best_epoch = int(np.nanargmin(vals)) + 1
    assert result["status"] == "finished" and tr.epoch < 40
    assert "early stopping" in result["reason"]
    # stopped exactly `patience` epochs after the last improvement
    assert len(vals) == best_epoch + 2
    assert result["best_epoch"] == best_epoch
    assert result["val_loss"] == pytest.approx(min(vals), rel=1e-6)


def test_grad_norms_and_update_ratios_match_a_direct_computation():
    exp = preset(training={"epochs": 1, "telemetry_every": 1000}, optimizer={"type": "Adam", "lr": 0.01})
    rec = Recorder()
    tr = Trainer(exp, [rec])
    ref = copy.deepcopy(tr.model)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    ds = tr.dataset
    expected_g, expected_u = [], []
    for idx in _batches(tr, tr.steps_per_epoch):
        opt.zero_grad()
        nn.functional.cross_entropy(ref(ds.x_train[idx]), ds.y_train[idx]).backward()
        before = [p.detach().clone() for p in ref.parameters()]
        expected_g.append([p.grad.norm().item() for p in ref.parameters()])
        opt.step()
        # CS231n's ratio: the update's norm over the weights' norm before the step
        expected_u.append([(p.detach() - b).norm().item() / b.norm().item() for p, b in zip(ref.parameters(), before)])
    tr.run()
    g = np.concatenate([b.grad_norm for b in rec.blocks])
    u = np.concatenate([b.update_ratio for b in rec.blocks])
    np.testing.assert_allclose(g, expected_g, rtol=1e-5)
    np.testing.assert_allclose(u, expected_u, rtol=1e-4)
    losses = np.concatenate([b.loss for b in rec.blocks])
    assert len(losses) == tr.steps_per_epoch


def test_unit_health_matches_a_direct_computation():
    exp = preset(training={"epochs": 1, "telemetry_every": 1})
    rec = Recorder()
    tr = Trainer(exp, [rec])
    ref = copy.deepcopy(tr.model)
    # the probes run on a fixed set of training samples (the first 256), not on the step's batch
    x = tr.dataset.x_train[:256]
    assert len(x) == 160
    h1 = ref.layers[1](ref.layers[0](x))  # Tanh output
    h3 = ref.layers[3](ref.layers[2](h1))  # ReLU output
    tr.stop_after_steps = 1
    tr.run()
    snap = rec.telemetry[0]
    assert snap["probe_samples"] == 160
    tanh, relu = snap["layers"]["model.layers[1]"], snap["layers"]["model.layers[3]"]
    assert tanh["mean"] == pytest.approx(h1.mean().item(), abs=1e-6)
    assert tanh["std"] == pytest.approx(h1.std().item(), abs=1e-6)
    assert tanh["saturated"] == pytest.approx((h1.abs() >= 0.95).float().mean().item())
    assert relu["dead"] == pytest.approx(((h3 > 0).sum(0) == 0).float().mean().item())
    hist = snap["histograms"]["layers[0].weight"]["weight"]
    w0 = tr.model.layers[0].weight  # the histogram is taken after the step's update
    assert sum(hist["counts"]) == w0.numel() and hist["range"] == pytest.approx(w0.abs().max().item())
    m = w0.abs().max().item()
    assert hist["counts"] == np.histogram(w0.detach().numpy(), bins=30, range=(-m, m))[0].tolist()


def test_divergence_stops_at_once_and_names_a_layer():
    exp = preset(
        optimizer={"type": "SGD", "lr": 90.0, "momentum": 0.99},
        model={
            "input_shape": [2],
            "layers": [
                {"type": "Linear", "out_features": 64},
                {"type": "ReLU"},
                {"type": "Linear", "out_features": 64},
                {"type": "ReLU"},
                {"type": "Linear", "out_features": 2},
            ],
        },
        training={"epochs": 50},
    )
    tr = Trainer(exp)
    result = tr.run()
    assert result["status"] == "diverged"
    assert "layers[" in result["reason"] and "learning rate" in result["reason"]
    assert tr.epoch < 50
    assert all(torch.isfinite(p).all() for p in tr.model.parameters()), "a non-finite step must not be applied"


def test_same_preset_and_seed_give_identical_numbers():
    exp = preset(
        model={
            "input_shape": [2],
            "layers": [{"type": "Linear", "out_features": 16}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.3}, {"type": "Linear", "out_features": 2}],
        },
        optimizer={"type": "Adam", "lr": 0.01},
        training={"epochs": 3},
    )
    runs = []
    for _ in range(2):
        rec = Recorder()
        result = Trainer(exp, [rec]).run()
        runs.append((result, np.concatenate([b.loss for b in rec.blocks]), np.concatenate([b.grad_norm for b in rec.blocks])))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1]) and np.array_equal(runs[0][2], runs[1][2])
    other = Trainer(preset(seed=4, **{k: v for k, v in [("optimizer", {"type": "Adam", "lr": 0.01})]})).run()
    assert other["train_loss"] != runs[0][0]["train_loss"]


def test_pause_and_stop_from_another_thread():
    import threading
    import time

    tr = Trainer(preset(training={"epochs": 1000}))
    t = threading.Thread(target=tr.run)
    t.start()
    time.sleep(0.3)
    tr.control.pause()
    time.sleep(0.3)
    step = tr.step
    time.sleep(0.3)
    assert tr.step == step and tr.status == "paused"
    tr.control.resume()
    time.sleep(0.2)
    tr.control.stop()
    t0 = time.time()
    t.join(5)
    assert not t.is_alive() and time.time() - t0 < 1.0
    assert tr.status == "stopped" and tr.step > step


def test_resume_from_a_checkpoint_continues_exactly():
    exp = preset(optimizer={"type": "Adam", "lr": 0.01}, training={"epochs": 4})
    full = Trainer(exp).run()
    first = Trainer(preset(optimizer={"type": "Adam", "lr": 0.01}, training={"epochs": 4}))

    class StopAt2(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                trainer.control.stop()

    first.callbacks.append(StopAt2())
    first.run()
    state = first.state()
    second = Trainer(exp, resume=state)
    result = second.run()
    assert result == full


def test_loss_that_cannot_fit_is_refused():
    with pytest.raises(UserError, match="MSELoss on 2-class labels"):
        Trainer(preset(loss={"type": "MSELoss"}))
    with pytest.raises(UserError, match="make the last layer's size 2"):
        Trainer(preset(model={"input_shape": [2], "layers": [{"type": "Linear", "out_features": 3}]}))
    with pytest.raises(UserError, match="input_shape"):
        Trainer(preset(model={"input_shape": [3], "layers": [{"type": "Linear", "out_features": 2}]}))


def test_binary_losses_take_one_logit():
    one = {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 8}, {"type": "Tanh"}, {"type": "Linear", "out_features": 1}]}
    for loss in ("BCEWithLogitsLoss", "SoftMarginLoss"):
        result = Trainer(preset(loss={"type": loss}, model=one, optimizer={"type": "Adam", "lr": 0.05}, training={"epochs": 8})).run()
        assert result["val_accuracy"] > 0.8, (loss, result)


def test_regression_reports_r2():
    exp = validate(
        {
            "format": "dlviz-preset/1",
            "seed": 0,
            "data": {"name": "reg-plane", "num_samples": 300, "batch_size": 32},
            "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 1}]},
            "loss": {"type": "MSELoss"},
            "optimizer": {"type": "Adam", "lr": 0.05},
            "training": {"epochs": 15},
        }
    )
    result = Trainer(exp).run()
    assert result["status"] == "finished" and result["val_r2"] > 0.9


SCHEDULES = {
    "StepLR": {"step_size": 2, "gamma": 0.5},
    "ExponentialLR": {"gamma": 0.8},
    "CosineAnnealingLR": {"T_max": 4, "eta_min": 0.001},
    "LinearLR": {"start_factor": 0.25, "total_iters": 3},
    "OneCycleLR": {"max_lr": 0.1},
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedules_follow_torch(name):
    exp = preset(schedule={"type": name, **SCHEDULES[name]}, training={"epochs": 5})
    rec = Recorder()
    tr = Trainer(exp, [rec])
    tr.run()
    lrs = np.concatenate([b.lr for b in rec.blocks])
    ref_model = nn.Linear(1, 1)
    opt = torch.optim.SGD(ref_model.parameters(), lr=0.1)
    args = dict(SCHEDULES[name])
    if name == "OneCycleLR":
        args["total_steps"] = 5 * tr.steps_per_epoch
    sched = getattr(torch.optim.lr_scheduler, name)(opt, **args)
    expected = []
    for epoch in range(5):
        for _ in range(tr.steps_per_epoch):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
            if name == "OneCycleLR":
                sched.step()
        if name != "OneCycleLR":
            sched.step()
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_reduce_on_plateau_lowers_the_rate_when_validation_stalls():
    exp = preset(optimizer={"type": "SGD", "lr": 1e-6}, schedule={"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5}, training={"epochs": 4})
    rec = Recorder()
    Trainer(exp, [rec]).run()
    assert rec.epochs[-1]["lr"] < 1e-6


def test_a_state_is_a_snapshot_that_later_steps_do_not_change():
    """Trainer.state() copies the optimizer's tensors: a checkpoint kept in memory and saved later (the run store keeps
    the newest epoch's state until its next save) must hold the numbers of the moment it was taken."""
    import io

    exp = validate(
        {
            "format": "dlviz-preset/1",
            "seed": 3,
            "data": {"name": "xor", "num_samples": 100, "batch_size": 10},
            "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 4}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]},
            "loss": {"type": "CrossEntropyLoss"},
            "optimizer": {"type": "Adam", "lr": 0.05},
            "schedule": {"type": "StepLR", "step_size": 1},
            "training": {"epochs": 2},
        }
    )

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 1:
                self.state = trainer.state()
                buf = io.BytesIO()
                torch.save(trainer.state(), buf)
                self.saved = buf.getvalue()

    snap = Snapshot()
    Trainer(exp, [snap]).run()  # a second epoch of Adam steps after the snapshot
    then = torch.load(io.BytesIO(snap.saved), weights_only=True)
    for i, st in then["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(snap.state["optimizer"]["state"][i][k], v), f"optimizer state {i}.{k} changed after the snapshot"
    assert snap.state["scheduler"] == then["scheduler"]


def test_fitting_a_model_to_data_it_cannot_take_changes_nothing_and_says_what_to_change():
    """The digits CNN and an iris-like table: setting input_shape to [4] would leave Conv2d layers that can't train, so
    the preset is left as it was and the sentence names the layer and what to change; a model that can take the data
    is fitted and then trains."""
    import copy

    from test_data import IRIS_LIKE

    from dlviz.preset import gallery, sections
    from dlviz.training import fit

    cnn = gallery.raw("cnn-digits")
    cnn["data"] = {"name": "csv", "target": "species", "batch_size": 16}
    before = copy.deepcopy(cnn)
    with pytest.raises(UserError) as err:
        fit.fit_model_to_data(cnn, IRIS_LIKE)
    assert cnn == before
    assert err.value.path == "model.layers[0]" and "left as it was" in err.value.message and "Conv2d" in err.value.message
    assert "Build" in err.value.message

    mlp = gallery.raw("xor")
    mlp["data"] = {"name": "csv", "target": "species", "batch_size": 16}
    fitted, msg = fit.fit_model_to_data(mlp, IRIS_LIKE)
    assert msg.startswith("Fitted the model to the data: input_shape [4]")
    fit.trainable(fitted, IRIS_LIKE)  # no UserError: it can train

    on_images = sections.set_dataset(gallery.raw("xor"), "digits")  # an MLP given 8×8 images takes them flattened
    fitted, msg = fit.fit_model_to_data(on_images)
    assert fitted["model"]["layers"][0] == {"type": "Flatten"} and "a Flatten before the first Linear" in msg
    fit.trainable(fitted)


def test_probe_cadence_fits_the_run_length():
    from dlviz.training.telemetry import probe_interval

    assert probe_interval(48) == 1 and probe_interval(59) == 1  # every step of a short run
    assert probe_interval(400) == 13 and 400 // 13 + 1 >= 30
    assert probe_interval(100_000) == 50
    exp = preset(training={"epochs": 2})  # 10 steps an epoch, no telemetry_every: every step is probed
    rec = Recorder()
    Trainer(exp, [rec]).run()
    assert [t["step"] for t in rec.telemetry] == list(range(20))
    rec = Recorder()
    Trainer(preset(training={"epochs": 2, "telemetry_every": 7}), [rec]).run()  # the preset's own value wins
    assert [t["step"] for t in rec.telemetry] == [0, 7, 14]


def test_the_probes_leave_training_unchanged():
    """A probe runs in eval mode and draws no random numbers: with dropout, the losses are those of a run without probes."""
    model = {
        "input_shape": [2],
        "layers": [{"type": "Linear", "out_features": 16}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.5}, {"type": "Linear", "out_features": 2}],
    }
    a, b = Recorder(), Recorder()
    Trainer(preset(model=model, training={"epochs": 2, "telemetry_every": 1}), [a]).run()
    Trainer(preset(model=model, training={"epochs": 2, "telemetry_every": 1000}), [b]).run()
    assert len(a.telemetry) == 20 and len(b.telemetry) == 1
    np.testing.assert_array_equal(np.concatenate([x.loss for x in a.blocks]), np.concatenate([x.loss for x in b.blocks]))
