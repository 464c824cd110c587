"""The transfer-learning lessons keep their promise: the pretrained convolutions, frozen, with a retrained head beat the
same CNN trained from scratch on the same 100 images, and the frozen weights are the pretraining run's, unchanged."""

import pytest
import torch

from dlviz.preset import gallery
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer


def _train(name: str, store: RunStore) -> Trainer:
    exp = gallery.load(name)
    tr = Trainer(exp)
    tr.callbacks.append(StoreCallback(store, store.create_run(exp, status="running")))
    tr.run()
    return tr


@pytest.mark.slow  # three CNN runs on MNIST: about 50 s on one thread
def test_transfer_beats_scratch_on_100_images():
    store = RunStore()  # the one init_from resolves through
    pre = _train("transfer-pretrain", store)
    assert pre.history[-1]["val_accuracy"] > 0.95
    fine = _train("transfer-finetune", store)
    scratch = _train("transfer-scratch", store)
    assert len(fine.dataset.x_train) == len(scratch.dataset.x_train) == 100
    assert torch.equal(fine.dataset.x_train, scratch.dataset.x_train)
    assert fine.transfer is not None and not fine.transfer.new  # every tensor came from the pretraining run
    trained = pre.model.state_dict()
    for name, value in fine.model.state_dict().items():
        if name.startswith(("layers.0.", "layers.3.")):  # the frozen convolutions
            assert torch.equal(value, trained[name])
    # the figures the lessons' notes quote (seed 0): 91.5% against 81.8%
    f, s = fine.history[-1]["val_accuracy"], scratch.history[-1]["val_accuracy"]
    assert f > s + 0.05, (f, s)
