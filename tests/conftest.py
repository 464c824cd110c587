"""Shared test helpers and fixtures."""

from __future__ import annotations

import os
import tempfile

# Runs, uploads and exports of the test session go to a fresh folder, never to the user's data directory.
os.environ.setdefault("DLVIZ_DATA_DIR", tempfile.mkdtemp(prefix="dlviz-test-"))

import torch  # noqa: E402

from dlviz.model import budget  # noqa: E402

# The app's server gives large freed blocks back to the system (app.py); tests that measure memory see the same.
budget.return_freed_memory()

# Training in tests uses one thread, as the CLI and the app's workers do (limits.train_threads), so their numbers agree.
torch.set_num_threads(1)


def preset(layers, input_shape, **model) -> dict:
    """A minimal preset document around a list of layers (no data, loss or optimizer)."""
    return {"format": "dlviz-preset/1", "name": "test", "seed": 0, "model": {"input_shape": list(input_shape), **model, "layers": layers}}


def rss_bytes() -> int:
    """The resident set size of this process now (Linux /proc), for allocation checks."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
