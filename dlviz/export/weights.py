"""A model's weights out of dlviz: as ONNX (checked against PyTorch in onnxruntime), safetensors or a state dict."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Optional

import torch
from torch import nn

from dlviz.errors import UserError
from dlviz.preset.schema import Experiment


def _example(net: nn.Module, input_shape: tuple, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)  # a private generator: exporting must not move the global random state
    emb = next((m for m in net.modules() if isinstance(m, nn.Embedding)), None)
    if getattr(net, "input_dtype", torch.float32) == torch.long and emb is not None:
        return torch.randint(0, emb.num_embeddings, (batch, *input_shape), generator=g)
    return torch.randn((batch, *input_shape), generator=g)


def onnx(model, path, state_dict: Optional[dict] = None, atol: float = 1e-4) -> dict:
    """Write the model (an Experiment, built untrained from its seed, or an nn.Module built by dlviz) as ONNX to `path`,
    then re-run the file in onnxruntime against PyTorch. Returns {"max_abs_diff", "batch_sizes", "dynamic_batch"}.

    A module needs an `input_shape` (one sample, as dlviz's Network has); `state_dict` replaces its weights first."""
    from dlviz.model.build import build_model

    if isinstance(model, Experiment):
        net = build_model(model, seed=model.seed)
        input_shape = tuple(model.model.input_shape)
    else:
        net = model
        input_shape = tuple(net.input_shape)
    if state_dict is not None:
        try:
            net.load_state_dict(state_dict)
        except RuntimeError as e:
            raise UserError("", f"the weights do not fit this preset's model ({_first_line(e)})") from None
    was_training = net.training
    net.eval()
    try:
        return _onnx(net, input_shape, path, atol)
    finally:
        net.train(was_training)


def _onnx(net: nn.Module, input_shape: tuple, path, atol: float) -> dict:
    import warnings

    x = _example(net, input_shape, 2)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("", "ONNX export needs onnx, onnxscript and onnxruntime; pip install them and try again") from None
    dynamic = True
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            program = _export(net, x, dynamic=True)
        except Exception:
            dynamic = False  # some models fix the batch size while tracing; a file for batches of 2 still helps
            try:
                program = _export(net, x, dynamic=False)
            except Exception as e:
                raise UserError("", f"this model cannot be exported to ONNX: {_export_reason(e)}") from None
        program.save(str(path))
    sizes = (2, 5) if dynamic else (2,)
    worst = 0.0
    for b in sizes:
        xb = _example(net, input_shape, b, seed=b)
        with torch.no_grad():
            want = net(xb).numpy()
        got = _run_onnx(path, xb.numpy())
        if got.shape != want.shape:
            raise UserError("", f"the ONNX file gives outputs of shape {list(got.shape)} where PyTorch gives {list(want.shape)}")
        diff = float(abs(got - want).max()) if want.size else 0.0
        worst = max(worst, diff)
        scale = max(1.0, float(abs(want).max()) if want.size else 1.0)
        if not diff <= atol * scale:
            raise UserError("", f"the ONNX file does not reproduce the model: outputs differ by up to {diff:.3g} in onnxruntime")
    return {"max_abs_diff": worst, "batch_sizes": list(sizes), "dynamic_batch": dynamic}


def _export(net: nn.Module, x: torch.Tensor, dynamic: bool):
    shapes = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},) if dynamic else None
    return torch.onnx.export(net, (x,), dynamo=True, dynamic_shapes=shapes, input_names=["input"], output_names=["output"], verbose=False, optimize=True)


def _run_onnx(path, x):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@contextlib.contextmanager
def _quiet():
    """Silence what the exporter prints to stdout and stderr, so the CLI prints one line."""
    log = logging.getLogger("torch")
    level = log.level
    log.setLevel(logging.ERROR)  # the exporter's notes (missing optional operators, tracing details) are not the user's business
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        log.setLevel(level)


def _export_reason(e: BaseException) -> str:
    """The root cause of an exporter failure in one line: which stage failed and the innermost error's first line."""
    import re

    stage = "torch.export cannot trace it" if type(e).__name__ == "TorchExportError" else "an operation has no ONNX form"
    root = e
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    text = re.sub(r"\x1b\[[0-9;]*m", "", _first_line(root))
    return f"{stage} ({text.rstrip('.')})"


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------- weights


def _plain_tensors(state_dict: dict) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state_dict.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            raise UserError("", f"the weights hold {type(v).__name__} under {k!r}; only tensors can be saved")
        out[k] = v.detach().cpu().contiguous().clone()  # clones: safetensors refuses tensors that share memory
    return out


def safetensors_bytes(state_dict: dict) -> bytes:
    """A state dict as a .safetensors file (tensors only, nothing that runs code when loaded)."""
    from safetensors.torch import save

    return save(_plain_tensors(state_dict), metadata={"format": "pt"})


def state_dict_bytes(state_dict: dict) -> bytes:
    """A state dict as a torch.save file that torch.load(..., weights_only=True) reads: a plain dict of tensors."""
    buf = io.BytesIO()
    torch.save(_plain_tensors(state_dict), buf)
    return buf.getvalue()


def run_weights(run_id: str) -> dict:
    """The final weights of a stored run (its last checkpoint's model state)."""
    from dlviz.training.store import RunStore

    state = RunStore().load_checkpoint(run_id)
    model = state.get("model") if isinstance(state, dict) else None
    if not isinstance(model, dict):
        raise UserError("", f"run {run_id}'s checkpoint holds no model weights")
    return model


def init_weights(exp, run_id: Optional[str] = None) -> dict:
    """The starting weights of a preset with init_from, for its exported script: those of a stored run of it (its
    checkpoint at step 0, which holds what init_from copied, whatever the store has learned since), else the checkpoint
    init_from names now (its whole model state)."""
    from dlviz.training.store import RunStore
    from dlviz.training.transfer import find_checkpoint

    if run_id is not None:
        source, state = f"run {run_id}", RunStore().load_checkpoint(run_id, 0)
    else:
        source, _, state = find_checkpoint(exp.init_from)
    model = state.get("model") if isinstance(state, dict) else None
    if not isinstance(model, dict):
        raise UserError("init_from", f"the checkpoint of {source} holds no model weights")
    return model
