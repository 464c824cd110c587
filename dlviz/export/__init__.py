"""A preset as a standalone PyTorch script, and a model's weights as ONNX, safetensors or a state dict."""

from dlviz.export.script import script
from dlviz.export.weights import onnx, run_weights, safetensors_bytes, state_dict_bytes

__all__ = ["onnx", "run_weights", "safetensors_bytes", "script", "state_dict_bytes"]
