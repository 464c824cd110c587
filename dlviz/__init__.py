"""dlviz: build, train and look inside neural networks described by one JSON preset."""

from dlviz.errors import UserError

__all__ = ["UserError"]
__version__ = "0.1.0"
