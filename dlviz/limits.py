"""Limits for a hosted server, in one place; each can be overridden by an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from dlviz.errors import UserError


@dataclass(frozen=True)
class Limits:
    """Upper bounds checked before anything is allocated. Environment: DLVIZ_<FIELD NAME IN CAPS>."""

    max_document_bytes: int = 1_000_000  # size of one preset document
    max_depth: int = 32  # nesting of blocks (Residual inside Concat inside ...)
    max_layers: int = 1_000  # layers in the whole model, blocks included
    max_params: int = 200_000_000  # parameters of a model that is only summarised (meta device)
    max_train_params: int = 10_000_000  # parameters of a model that is materialised and trained
    max_input_elements: int = 1_000_000  # elements of one input sample (3x224x224 = 150,528)
    max_activation_elements: int = 50_000_000  # elements of any one layer's output for one sample
    max_epochs: int = 1_000
    max_samples: int = 100_000  # generated dataset size
    max_batch_size: int = 4_096
    max_upload_bytes: int = 20_000_000  # uploaded CSV or image
    max_image_pixels: int = 25_000_000  # pixels of an uploaded image (width × height), checked before decoding
    upload_quota_bytes: int = 100_000_000  # uploaded tables one browser session may keep on the server at a time
    upload_max_age_s: int = 86_400  # seconds an uploaded table is kept after its last upload
    image_cache_bytes: int = 32_000_000  # decoded uploaded images one session keeps for its reruns
    kept_presets_bytes: int = 200_000_000  # presets kept on the server for addresses too long to carry them (?p=);
    # the least recently used go first
    max_concurrent_runs: int = 4  # training runs across all sessions of one server
    max_runs_per_session: int = 1  # training runs of one browser session at a time
    max_runs_per_address: int = 2  # training runs of one network address at a time: half the server's
    # runs, so a browser that drops its cookies can't take them all, while a
    # classroom behind one NAT address still trains two at once
    max_grid_points: int = 10_201  # loss-surface grid (101 x 101)
    max_trials: int = 200  # trials of one hyperparameter search (`sweep --trials`), each a whole training run
    max_compute_bytes: int = 500_000_000  # memory of one computation in the server process (feature maps, effective
    # fields, loss surfaces): every session shares that process
    max_train_bytes: int = 2_000_000_000  # memory of one training run's model and batch, checked before it starts
    max_surface_flops: int = 4_000_000_000_000  # floating-point operations of one loss surface: beyond them it is
    # computed on fewer samples (every gallery preset's 31x31 surface fits)
    playground_units: int = 8  # neurons in one hidden layer of a Playground network (TensorFlow Playground's 8)
    playground_layers: int = 6  # hidden layers of a Playground network (Playground's 6)
    train_threads: int = 1  # torch threads for training: 1 leaves a core to the server, and the
    # CLI and the app then compute bit-identical numbers

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get("DLVIZ_" + f.name.upper())
            if raw is not None:
                try:
                    values[f.name] = int(raw.replace("_", ""))
                except ValueError:
                    raise ValueError(f"DLVIZ_{f.name.upper()} must be an integer, not {raw!r}") from None
        return cls(**values)


def current() -> Limits:
    """The limits in force now (read from the environment on each call, so tests can change them)."""
    return Limits.from_env()


DEVICES = ("auto", "cpu", "cuda")


def device_setting(environ=None) -> str:
    """DLVIZ_DEVICE as given (auto, cpu or cuda), checked without importing torch; a wrong value is a UserError."""
    environ = os.environ if environ is None else environ
    raw = environ.get("DLVIZ_DEVICE", "auto")
    choice = raw.strip().lower() or "auto"
    if choice not in DEVICES:
        raise UserError("", f"DLVIZ_DEVICE must be auto, cpu or cuda, not {raw!r}")
    return choice


def device(environ=None) -> str:
    """The torch device that training, feature maps, receptive fields and loss surfaces run on: "cpu" or "cuda".

    DLVIZ_DEVICE is auto (the default: cuda when torch finds a GPU, else cpu), cpu or cuda; a wrong value, or cuda on a
    machine without a GPU, is a UserError naming the setting. Read on each call, like the limits. With a GPU, TF32 is
    turned off, so that float32 results match the CPU's within float tolerance instead of TF32's 1e-3.

    Never call this in the training forkserver: a CUDA context made there would be unusable in the workers forked
    from it. Each worker asks for itself."""
    choice = device_setting(environ)
    if choice == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if choice == "cuda":
            raise UserError("", "DLVIZ_DEVICE is cuda, but torch finds no CUDA GPU on this machine; set DLVIZ_DEVICE to auto or cpu")
        return "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return "cuda"
