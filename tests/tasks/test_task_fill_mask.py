"""experiments.tasks.fill_mask, directly: which inputs hold a mask ([MASK] or <mask>), how every placeholder
becomes the tokenizer's own mask token, the top-k fillers of each mask (ranked probabilities, the filled-in
sequence), a mask lost to truncation as a one-line error, and which models fill-mask trains."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from task_helpers import assert_one_line, config, make_task

from experiments.errors import DataError, ExperimentError
from experiments.tasks.fill_mask import FillMask

WORDS = st.sampled_from("paris is the capital of france cat sat on mat a dog ran".split())
PLACEHOLDER = st.sampled_from(["[MASK]", "<mask>"])
# a text of words with one or more placeholders among them
MASKED = st.lists(st.one_of(WORDS, PLACEHOLDER), min_size=1, max_size=10).filter(
    lambda parts: any(p in ("[MASK]", "<mask>") for p in parts)).map(" ".join)


@given(text=st.text(max_size=30), placeholder=st.one_of(st.none(), PLACEHOLDER), at=st.integers(0, 30))
def test_an_input_needs_a_mask_placeholder_else_a_one_line_error(text, placeholder, at):
    task = FillMask(config("fill-mask").task)
    if placeholder is not None:
        text = text[:at] + placeholder + text[at:]
    if "[MASK]" in text or "<mask>" in text:
        assert task.check_input(text) == text
        return
    with pytest.raises(DataError) as info:
        task.check_input(text)
    assert_one_line(info.value, "fill-mask")


@given(text=MASKED)
def test_every_placeholder_becomes_the_tokenizer_s_mask_token(text, tokenizer):
    task = make_task(FillMask, None, tokenizer)
    adapted = task.adapt_input(task.check_input(text))
    placeholders = text.count("[MASK]") + text.count("<mask>")
    assert "<mask>" not in adapted and adapted.count("[MASK]") == placeholders
    assert tokenizer(adapted)["input_ids"].count(tokenizer.mask_token_id) == placeholders


def test_top_k_is_five_unless_set():
    assert FillMask(config("fill-mask").task).top_k == 5
    assert FillMask(config("fill-mask", top_k=2).task).top_k == 2


def _fill(task, batch):
    import torch

    with torch.no_grad():
        return task.manual([task.adapt_input(task.check_input(x)) for x in batch])


@settings(max_examples=12)
@given(batch=st.lists(MASKED, min_size=1, max_size=4), top_k=st.integers(1, 4))
def test_each_mask_gets_top_k_fillers_ranked_by_probability(batch, top_k, tiny, tokenizer):
    task = make_task(FillMask, tiny("mlm"), tokenizer, top_k=top_k, max_length=64)
    for text, output in zip(batch, _fill(task, batch)):
        masks = text.count("[MASK]") + text.count("<mask>")
        per_mask = [output] if masks == 1 else output
        assert len(per_mask) == masks
        for fillers in per_mask:
            assert len(fillers) == top_k
            scores = [f["score"] for f in fillers]
            assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
            assert len({f["token"] for f in fillers}) == top_k
            for filler in fillers:
                assert filler["token_str"] == tokenizer.decode([filler["token"]])
                if masks == 1:  # the sentence with the token in the mask's place
                    expected = tokenizer.decode(
                        [filler["token"] if t == tokenizer.mask_token_id else t
                         for t in tokenizer(task.adapt_input(text))["input_ids"]], skip_special_tokens=True)
                    assert filler["sequence"] == expected


def test_a_mask_cut_off_by_truncation_is_a_one_line_error(tiny, tokenizer):
    task = make_task(FillMask, tiny("mlm"), tokenizer, max_length=8)
    text = "the cat sat on the mat " * 4 + "[MASK]"
    with pytest.raises(DataError) as info:
        _fill(task, ["a [MASK] here", text])
    assert_one_line(info.value, "lost its mask token to truncation")


def test_a_tokenizer_without_a_mask_token_is_refused():
    task = FillMask(config("fill-mask").task)
    with pytest.raises(ExperimentError) as info:
        task.check_model(None, SimpleNamespace(mask_token=None), config("fill-mask").task)
    assert_one_line(info.value, "mask token")
    task.check_model(None, SimpleNamespace(mask_token="[MASK]"), config("fill-mask").task)  # one that has it


@pytest.mark.parametrize("name", ["gpt2", "t5", "llama"])
def test_training_refuses_a_model_that_is_not_a_masked_lm_encoder(name, tiny):
    cfg = config("fill-mask")
    with pytest.raises(ExperimentError) as info:
        FillMask(cfg.task).setup_training(tiny(name).config, cfg)
    assert_one_line(info.value, "trains a masked-LM encoder", f"'{tiny(name).config.model_type}' model")


def test_training_takes_a_bert_model_with_the_masked_lm_head():
    from transformers import BertConfig

    cfg = config("fill-mask")
    task = FillMask(cfg.task)
    task.setup_training(BertConfig(), cfg)
    assert task.train_auto_class == "AutoModelForMaskedLM" and not task.shift_labels
