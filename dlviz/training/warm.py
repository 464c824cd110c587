"""Imported by the worker forkserver: pays the one-time costs (lazy torch imports, dataset files) once for all workers."""

from dlviz.data import datasets as data  # noqa: F401
from dlviz.model import build  # noqa: F401
from dlviz.preset import gallery  # noqa: F401
from dlviz.training import (
    live,  # noqa: F401
    store,  # noqa: F401
)
from dlviz.training import trainer as train  # noqa: F401

_exp = gallery.load("xor")
build.summarize(_exp)  # the first meta-device build imports much of torch lazily (about 1.5 s)
build.build_model(_exp, seed=0)
for _name in ("mnist", "digits"):
    data._raw_images(_name)  # parsed once here, inherited by every forked worker
