"""Fixtures for the inference tests: tiny random checkpoints and a composed-config helper.

The tiny checkpoints cover the tasks no offline model covers. They share MiniLM's real WordPiece
tokenizer, so inputs tokenize as they would for a BERT model; the weights are random (seeded), which is
all the pipeline-vs-manual agreement and plumbing tests need.
"""
from __future__ import annotations

import pytest


def make_config(*overrides: str):
    """The typed config ``python run.py mode=infer <overrides>`` would run with (one torch thread: the
    test machine's cores are shared, and multi-threaded small matmuls stall when they are busy)."""
    from experiments.config.validate import compose, to_typed

    return to_typed(compose(["mode=infer", "inference.progress=false", "inference.num_threads=1", *overrides]))


@pytest.fixture(autouse=True)
def _restore_threads():
    """Tests here may change torch's thread count; give the rest of the session its own back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def config():
    return make_config
