"""pipeline() and the hand-written path agree: same labels / tokens / spans / texts, scores within 1e-5.

Real models where they exist offline (MiniLM, SmolLM2 GGUF); tiny random checkpoints for the rest.
"""
from __future__ import annotations

import math
from typing import Any

import pytest

TOL = 1e-5


def assert_agree(a: Any, b: Any, path: str = "output") -> None:
    """Equal structure; strings and ints equal; floats within TOL."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(float(a), float(b), abs_tol=TOL), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_agree(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_agree(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def assert_same_ranking(a: dict, b: dict) -> None:
    """Zero-shot outputs: the same score per label (within TOL) and the same order wherever two scores
    differ by more than TOL (random tiny models can tie to within float noise)."""
    assert a["sequence"] == b["sequence"]
    scores_a, scores_b = dict(zip(a["labels"], a["scores"])), dict(zip(b["labels"], b["scores"]))
    assert_agree(scores_a, scores_b)
    for first, second in zip(b["labels"], b["labels"][1:]):
        if scores_b[first] - scores_b[second] > TOL:
            assert a["labels"].index(first) < a["labels"].index(second)


def both_paths(config, inputs, *overrides):
    """Both code paths on float32 weights (scores within 1e-5 need them; bf16, the default where it is fast,
    is checked on labels below and by scripts/bench_infer.py --agreement-model on all of SST-2 dev)."""
    import torch

    from experiments.infer import load_task

    task = load_task(config("inference.dtype=float32", *overrides))
    assert task.has_pipeline
    batch = [task.adapt_input(task.check_input(x)) for x in inputs]
    with torch.inference_mode():
        return task, task.pipeline(batch), task.manual(batch)


SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."]


@pytest.mark.parametrize("extra", [[], ["task.top_k=2"]])
def test_text_classification(config, tiny_models, extra):
    pairs = SENTENCES + [{"text": "It rains.", "text_pair": "The street is wet."}]
    _, pipe, manual = both_paths(config, pairs, "task=text-classification", "model=local",
                                 f"model.name_or_path={tiny_models['classifier']}", *extra)
    assert_agree(pipe, manual)
    first = manual[0][0] if extra else manual[0]
    assert first["label"] in ("negative", "positive") and 0.5 <= first["score"] <= 1.0


def test_bf16_weights_give_both_paths_the_same_labels(config, tiny_models):
    _, pipe, manual = both_paths(config, SENTENCES, "task=text-classification", "model=local",
                                 f"model.name_or_path={tiny_models['classifier']}", "inference.dtype=bfloat16")
    assert [p["label"] for p in pipe] == [m["label"] for m in manual]
    assert [p["score"] for p in pipe] == pytest.approx([m["score"] for m in manual], abs=1e-2)


def test_fill_mask_single_and_multiple_masks(config, tiny_models):
    inputs = ["Paris is the [MASK] of France.", "The [MASK] sat on the <mask>."]
    _, pipe, manual = both_paths(config, inputs, "task=fill-mask", "model=local", "task.top_k=3",
                                 f"model.name_or_path={tiny_models['mlm']}")
    assert_agree(pipe, manual)
    assert len(manual[0]) == 3 and {"score", "token", "token_str", "sequence"} == set(manual[0][0])
    assert len(manual[1]) == 2 and len(manual[1][0]) == 3  # one top-3 list per mask


def test_feature_extraction_minilm(config):
    """Real MiniLM: token vectors agree, and pooled embeddings reproduce the known similarities."""
    import numpy as np

    _, pipe, manual = both_paths(config, SENTENCES, "task=feature-extraction", "model=minilm")
    assert_agree(pipe, manual)
    assert np.asarray(manual[0]).shape == (1, 8, 384)  # pipeline()'s shape for "A man is eating food."
    _, pipe, manual = both_paths(config, SENTENCES, "task=feature-extraction", "model=minilm",
                                 "task.pooling=mean", "task.normalize=true")
    assert_agree(pipe, manual)
    vectors = np.asarray(manual)
    assert vectors[0] @ vectors[1] == pytest.approx(0.7553, abs=2e-3)
    assert vectors[0] @ vectors[2] == pytest.approx(-0.0461, abs=2e-3)


def test_zero_shot_nli(config, tiny_models):
    task, pipe, manual = both_paths(config, SENTENCES, "task=zero-shot-classification", "model=local",
                                    f"model.name_or_path={tiny_models['nli']}",
                                    "task.candidate_labels=[food,film,sport]")
    for a, b in zip(pipe, manual):
        assert_same_ranking(a, b)
    assert sorted(manual[0]["labels"]) == ["film", "food", "sport"]
    assert sum(manual[0]["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_zero_shot_nli_multi_label(config, tiny_models):
    _, pipe, manual = both_paths(config, SENTENCES[:2], "task=zero-shot-classification", "model=local",
                                 f"model.name_or_path={tiny_models['nli']}", "task.multi_label=true",
                                 "task.candidate_labels=[food,film]")
    for a, b in zip(pipe, manual):
        assert_same_ranking(a, b)
    assert all(0.0 <= s <= 1.0 for s in manual[0]["scores"])  # independent entailment probabilities


def test_zero_shot_embedding_minilm(config):
    """The separately named embedding-similarity method, on the real MiniLM."""
    _, pipe, manual = both_paths(config, ["I cooked pasta with tomato sauce for dinner.",
                                          "The striker scored twice in the final."],
                                 "task=zero-shot-classification", "model=minilm", "task.method=embedding",
                                 "task.candidate_labels=[cooking,football,politics]",
                                 "task.hypothesis_template='This text is about {}.'")
    assert_agree(pipe, manual)
    assert manual[0]["labels"][0] == "cooking" and manual[1]["labels"][0] == "football"


def test_text_generation_tiny(config, tiny_models):
    _, pipe, manual = both_paths(config, ["once upon a time", "hello", "the weather today is quite"],
                                 "task=text-generation", "model=local", "task.max_new_tokens=6",
                                 f"model.name_or_path={tiny_models['gpt2']}")
    assert_agree(pipe, manual)
    assert all(len(o) == 1 and o[0]["generated_text"] for o in manual)


def test_causal_summarization_uses_the_text_generation_pipeline(config, tiny_models):
    task, pipe, manual = both_paths(config, ["a long article about the weather " * 4, "short text"],
                                    "task=summarization", "model=local", "task.max_new_tokens=5",
                                    f"model.name_or_path={tiny_models['gpt2']}", "task.chat=false")
    assert task.method_name() == "causal" and task.pipeline_name() == "text-generation"
    assert_agree(pipe, manual)
    assert set(manual[0][0]) == {"summary_text"}


@pytest.mark.slow
def test_smollm2_chat_generation_and_prompted_translation(config):
    """Real SmolLM2-135M-Instruct (GGUF): both paths give the same greedy text; chat prompts work."""
    import torch

    from experiments.infer import load_task
    from experiments.tasks.generation import Translation

    task = load_task(config("task=text-generation", "model=smollm2", "task.max_new_tokens=12"))
    prompts = ["What is the capital of France? Answer in one word.", "Name a colour."]
    with torch.inference_mode():
        pipe, manual = task.pipeline(prompts), task.manual(prompts)
    assert_agree(pipe, manual)
    assert "paris" in manual[0][0]["generated_text"].lower()
    cfg = config("task=translation", "model=smollm2", "task.max_new_tokens=12")
    translation = Translation(cfg.task, task.ctx)  # same loaded model, prompted
    assert translation.method_name() == "causal" and translation.use_chat()
    with torch.inference_mode():
        pipe, manual = translation.pipeline(["Good morning."]), translation.manual(["Good morning."])
    assert_agree(pipe, manual)
    assert manual[0][0]["translation_text"]
