"""Fixtures shared by the fuzzing tests of this folder."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Where drawn files go; the datasets cache goes there too (the user's cache is left alone)."""
    import datasets.config

    root = tmp_path_factory.mktemp("fuzz-inputs")
    patch = pytest.MonkeyPatch()
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "hf-cache"))
    yield root
    patch.undo()
