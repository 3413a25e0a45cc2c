"""Fixtures of the task unit tests: the real MiniLM tokenizer and tiny random models, built in memory once."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer(minilm_dir):
    """MiniLM's WordPiece tokenizer (fast, uncased, [MASK], right padding), shared: a test that changes it
    changes a copy (``copy.deepcopy``, slow: not per hypothesis example)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="session")
def left_tokenizer(minilm_dir):
    """The same tokenizer padding on the left, as generation sets it for decoder-only models."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir), padding_side="left")


@pytest.fixture(scope="session")
def tiny():
    """name -> the tiny random model tests/tiny_models.py builds under that name (seeded, eval mode,
    cached)."""
    import torch
    from tiny_models import BUILDERS

    built = {}

    def get(name: str):
        if name not in built:
            torch.manual_seed(0)
            model = BUILDERS[name]().eval()
            if name in ("t5", "gpt2", "llama", "opt"):  # as build_all saves them: generation stops at [SEP]
                model.generation_config.pad_token_id = 0
                model.generation_config.eos_token_id = 102
            built[name] = model
        return built[name]

    return get


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny models' small matmuls run on one thread (on busy shared cores, two threads stall them ~20x);
    the rest of the session gets its own thread count back."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
