"""A preset as a standalone PyTorch script, and a model's weights as ONNX, safetensors or a state dict."""

from dlviz.export.script import init_file, script
from dlviz.export.weights import init_weights, onnx, run_weights, safetensors_bytes, state_dict_bytes

__all__ = ["init_file", "init_weights", "onnx", "run_weights", "safetensors_bytes", "script", "state_dict_bytes"]
