"""Where dlviz keeps files: the run store, uploads and exports, under one data directory (DLVIZ_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory, created on first use. Default: ~/.local/share/dlviz; override with DLVIZ_DATA_DIR."""
    root = os.environ.get("DLVIZ_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".local", "share", "dlviz")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def uploads_dir() -> Path:
    path = data_dir() / "uploads"
    path.mkdir(exist_ok=True)
    return path
