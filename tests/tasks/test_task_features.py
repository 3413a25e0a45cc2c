"""experiments.tasks.features, directly: pooling (mean or first token, optionally L2-normalised) and the
hand-written feature-extraction path: one vector per real token (padding cut off, on either padding side),
the pipeline's [1, tokens, hidden] shape or one pooled vector, whatever batch an input is in."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from task_helpers import make_task

from experiments.tasks.features import FeatureExtraction, pool

WORDS = st.sampled_from("a man is eating food bread the girl carrying baby new movie awesome".split())
SENTENCE = st.lists(WORDS, min_size=1, max_size=20).map(" ".join)
HIDDEN = 32  # tests/tiny_models.py


@settings(max_examples=50)
@given(tokens=st.integers(1, 8), hidden=st.integers(1, 16), seed=st.integers(0, 2 ** 16),
       mode=st.sampled_from(["mean", "cls"]), normalize=st.booleans())
def test_pooling_is_the_mean_or_first_vector_scaled_to_unit_length_when_asked(tokens, hidden, seed, mode,
                                                                              normalize):
    import torch

    vectors = torch.randn(tokens, hidden, generator=torch.Generator().manual_seed(seed))
    pooled = pool(vectors, mode, normalize)
    raw = vectors.mean(dim=0) if mode == "mean" else vectors[0]
    assert pooled.shape == (hidden,)
    if normalize:
        assert float(pooled.norm()) == pytest.approx(1.0, abs=1e-5)
        assert torch.allclose(pooled * raw.norm(), raw, atol=1e-5)  # same direction
    else:
        assert torch.equal(pooled, raw)


def _features(task, batch):
    import torch

    with torch.no_grad():
        return task.manual(batch)


@settings(max_examples=12)
@given(batch=st.lists(SENTENCE, min_size=1, max_size=5), left=st.booleans(), limit=st.integers(4, 24))
def test_token_vectors_are_one_per_real_token_on_either_padding_side(batch, left, limit, tiny, tokenizer,
                                                                    left_tokenizer):
    import numpy as np

    tokenizer = left_tokenizer if left else tokenizer
    assert tokenizer.padding_side == ("left" if left else "right")
    task = make_task(FeatureExtraction, tiny("mlm").bert, tokenizer, max_length=limit)
    counts = task.token_counts(batch)
    assert counts == [len(tokenizer(text, truncation=True, max_length=limit)["input_ids"]) for text in batch]
    for counted, vectors in zip(counts, _features(task, batch)):
        assert np.asarray(vectors).shape == (1, counted, HIDDEN)  # pipeline()'s shape: [1, tokens, hidden]


@settings(max_examples=12)
@given(batch=st.lists(SENTENCE, min_size=1, max_size=5), limit=st.integers(4, 24))
def test_an_input_has_the_same_token_vectors_whatever_batch_it_is_in(batch, limit, tiny, tokenizer):
    """On the right padding of BERT's tokenizer (left padding moves a BERT model's absolute positions: the
    model's own behaviour, the pipeline's too)."""
    import numpy as np

    task = make_task(FeatureExtraction, tiny("mlm").bert, tokenizer, max_length=limit)
    for text, vectors in zip(batch, _features(task, batch)):
        np.testing.assert_allclose(np.asarray(vectors), np.asarray(_features(task, [text])[0]), atol=1e-5)


@settings(max_examples=12)
@given(batch=st.lists(SENTENCE, min_size=1, max_size=4), mode=st.sampled_from(["mean", "cls"]),
       normalize=st.booleans())
def test_pooled_features_pool_the_token_vectors(batch, mode, normalize, tiny, tokenizer):
    import numpy as np
    import torch

    tokens = make_task(FeatureExtraction, tiny("mlm").bert, tokenizer, max_length=32)
    pooled = make_task(FeatureExtraction, tiny("mlm").bert, tokenizer, max_length=32, pooling=mode,
                       normalize=normalize)
    for vectors, vector in zip(_features(tokens, batch), _features(pooled, batch)):
        expected = pool(torch.tensor(vectors[0]), mode, normalize)
        assert len(vector) == HIDDEN
        np.testing.assert_allclose(vector, expected.numpy(), atol=1e-5)
