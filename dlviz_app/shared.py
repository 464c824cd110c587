"""What several pages share: the cache of datasets."""

from __future__ import annotations

import json

import streamlit as st

from dlviz.data.datasets import load_dataset
from dlviz.preset.schema import DataSpec, Experiment


@st.cache_resource(max_entries=4, show_spinner=False)
def _dataset(data_text: str, seed: int):
    return load_dataset(DataSpec.model_validate(json.loads(data_text)), seed)


def dataset(exp: Experiment):
    """The dataset of a preset, made once per data section and seed and shared read-only between sessions and pages."""
    return _dataset(json.dumps(exp.to_dict()["data"], sort_keys=True), exp.seed)
