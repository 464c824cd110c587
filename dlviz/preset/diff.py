"""Telling runs apart by their presets: a short hash of a preset's canonical JSON, and the fields in which presets differ."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Union

from dlviz.preset.schema import Experiment

HASH_CHARS = 12  # stored with each run; labels show the first SHORT of them
SHORT = 6
DESCRIPTIVE = ("name", "description", "look_at", "classroom")  # text about the experiment, not the experiment


def preset_hash(preset: Union[Experiment, dict]) -> str:
    """The hash of a preset's canonical JSON (defaults dropped, keys sorted): two runs of the same experiment share it.
    A dict must already be canonical, an Experiment's to_dict() (as the run store keeps presets)."""
    doc = preset.to_dict() if isinstance(preset, Experiment) else preset
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def leaves(doc: Any, path: str = "") -> dict[str, Any]:
    """A preset flattened to {JSON path: value}; lists of layers are indexed (model.layers[2].out_features)."""
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(leaves(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(doc, list) and any(isinstance(v, (dict, list)) for v in doc):
        out = {}
        for i, v in enumerate(doc):
            out.update(leaves(v, f"{path}[{i}]"))
        return out
    return {path: doc}


def differences(presets: list[dict], limit: int = 3) -> list[str]:
    """For each preset, its values of the fields that are not the same in all of them ("optimizer.lr 0.03"), at most
    `limit` (then "…"); the descriptive text (name, description) is left out when anything else differs."""
    flat = [leaves(p) for p in presets]
    paths = sorted({k for f in flat for k in f})
    differ = [k for k in paths if len({json.dumps(f[k], sort_keys=True) if k in f else "—" for f in flat}) > 1]
    substantive = [k for k in differ if k.split(".")[0].split("[")[0] not in DESCRIPTIVE]
    shown = substantive or differ
    out = []
    for f in flat:
        parts = [f"{k} {_value(f[k])}" if k in f else f"{k} —" for k in shown[:limit]]
        out.append(", ".join(parts) + (" …" if len(shown) > limit else ""))
    return out


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
