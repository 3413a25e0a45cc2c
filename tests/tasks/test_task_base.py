"""experiments.tasks.base, directly: which column of a row is the text and which the reference, the checks
an input passes before a model loads, the token costs an input is budgeted at, which items are scored, and
how language-model losses summed per example become the eval loss and perplexity."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from task_helpers import assert_one_line, config, make_task

from experiments.errors import DataError
from experiments.tasks.base import (
    REFERENCE_KEYS,
    TEXT_KEYS,
    Context,
    Item,
    Task,
    TokenLossTraining,
    TrainingData,
    TrainingTask,
    short,
    text_field,
)

# column names as a file's header or a JSON row's keys give them (control characters and line breaks: below)
COLUMN = st.text(st.characters(exclude_categories=("Cc", "Zl", "Zp")), min_size=1, max_size=10)
VALUE = st.one_of(st.text(max_size=10), st.integers(), st.none())
ROWS = st.dictionaries(st.one_of(COLUMN, st.sampled_from(TEXT_KEYS + REFERENCE_KEYS)), VALUE, max_size=8)


class Plain(Task):
    name = "plain"


@given(row=ROWS, column=COLUMN)
def test_a_named_text_column_is_that_column_or_a_one_line_error_listing_the_columns(row, column):
    if column in row:
        assert text_field(row, column) is row[column]
        return
    with pytest.raises(DataError) as info:
        text_field(row, column)
    assert_one_line(info.value, f"no column '{column}'")


@given(row=ROWS)
def test_without_a_column_the_text_is_the_first_usual_column_present(row):
    present = [key for key in TEXT_KEYS if key in row]
    if present:
        assert text_field(row) is row[present[0]]
        return
    with pytest.raises(DataError) as info:
        text_field(row)
    assert_one_line(info.value, "inference.text_column", *TEXT_KEYS)


@given(row=ROWS)
def test_the_reference_is_the_first_usual_column_with_a_value(row):
    filled = [key for key in REFERENCE_KEYS if row.get(key) not in (None, "")]
    task = Plain(config("text-classification").task)
    assert task.reference_from_record(row) == (row[filled[0]] if filled else None)


def test_a_column_name_with_a_newline_still_gives_a_one_line_error():
    with pytest.raises(DataError) as info:
        text_field({"first\nsecond": "x"})
    assert_one_line(info.value, "first")


@given(row=ROWS, column=COLUMN)
def test_a_named_reference_column_is_the_only_one_read(row, column):
    task = Plain(config("text-classification").task)
    expected = row[column] if row.get(column) not in (None, "") else None
    assert task.reference_from_record(row, column) == expected


@given(value=st.one_of(st.text(max_size=80), st.integers(), st.none(),
                       st.lists(st.text(max_size=3), max_size=3)))
def test_an_input_is_a_non_blank_text_or_a_one_line_error_quoting_it_short(value):
    task = Plain(config("text-classification").task)
    if isinstance(value, str) and value.strip():
        assert task.check_input(value) is value
        return
    with pytest.raises(DataError) as info:
        task.check_input(value)
    assert_one_line(info.value, "plain needs a non-empty text input", short(value))


@given(value=st.one_of(st.text(max_size=200), st.integers(), st.lists(st.integers(), max_size=40)),
       limit=st.integers(4, 100))
def test_short_keeps_a_repr_that_fits_and_cuts_one_that_does_not(value, limit):
    text = short(value, limit)
    assert len(text) <= limit
    full = repr(value)
    assert text == full if len(full) <= limit else (text.endswith("...") and full.startswith(text[:-3]))


@given(value=st.one_of(st.text(max_size=20), st.dictionaries(st.text(max_size=5), st.integers(), max_size=4)))
def test_the_texts_of_an_input_are_the_string_or_each_value(value):
    texts = Plain(config("text-classification").task).input_text(value)
    assert texts == ([value] if isinstance(value, str) else [str(v) for v in value.values()])


@settings(max_examples=40)
@given(texts=st.lists(st.text(st.characters(codec="ascii"), max_size=300), min_size=1, max_size=6),
       limit=st.integers(3, 64))
def test_token_costs_are_each_input_tokenized_alone_up_to_the_input_limit(texts, limit, tokenizer):
    task = make_task(Plain, None, tokenizer, name="text-classification", max_length=limit)
    costs = task.token_costs(texts)
    assert costs == [len(tokenizer(t, truncation=True, max_length=limit)["input_ids"]) for t in texts]
    assert all(2 <= cost <= limit for cost in costs)  # [CLS] and [SEP] at least


def test_the_input_limit_is_the_task_s_else_the_tokenizer_s():
    cfg = config("text-classification")
    assert Context(cfg, None, None, None).max_length == cfg.tokenizer.max_length
    cfg = config("text-classification", max_length=7)
    assert Context(cfg, None, None, None).max_length == 7


@given(references=st.lists(st.one_of(st.none(), st.integers(0, 3)), max_size=12))
def test_scored_items_are_those_with_a_reference_in_order_with_their_outputs(references):
    items = [Item(str(n), f"text {n}", reference) for n, reference in enumerate(references)]
    outputs = [f"out {n}" for n in range(len(items))]
    scored = Plain(config("text-classification").task).scored(items, outputs)
    expected = [(item, f"out {item.id}", item.reference) for item in items if item.reference is not None]
    assert scored == expected


class LanguageModel(TokenLossTraining, Plain):
    pass


def _batch(draw_shape, seed):
    import torch

    batch, length, vocab = draw_shape
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=generator) * 3
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    ignored = torch.rand(batch, length, generator=generator) < 0.4
    return logits, labels.masked_fill(ignored, -100)


SHAPES = st.tuples(st.integers(1, 4), st.integers(2, 7), st.integers(2, 11))


@settings(max_examples=40)
@given(shape=SHAPES, seed=st.integers(0, 2 ** 16), shift=st.booleans())
def test_the_eval_loss_is_the_mean_over_target_tokens_and_perplexity_its_exp(shape, seed, shift):
    import torch
    import torch.nn.functional as F

    logits, labels = _batch(shape, seed)
    task = LanguageModel(config("fill-mask").task)
    task.shift_labels = shift
    rows = task.eval_rows(type("Output", (), {"logits": logits})(), {"labels": labels})
    if shift:  # causal: logits at t score the label at t + 1
        logits, labels = logits[:, :-1], labels[:, 1:]
    assert rows["tokens"].tolist() == (labels != -100).sum(-1).tolist()
    scores = task.eval_metrics(rows, None)
    if not (labels != -100).any():
        assert math.isnan(scores["loss"]) and math.isnan(scores["perplexity"])
        return
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    assert scores["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert scores["perplexity"] == pytest.approx(math.exp(float(expected)), rel=1e-5)
    assert torch.all(rows["loss_sum"] >= 0)


def test_a_huge_loss_gives_a_finite_perplexity():
    import torch

    rows = {"loss_sum": torch.tensor([1e6]), "tokens": torch.tensor([2])}
    scores = LanguageModel(config("fill-mask").task).eval_metrics(rows, None)
    assert scores["loss"] == 5e5 and scores["perplexity"] == pytest.approx(math.exp(50.0))


@given(losses=st.lists(st.tuples(st.floats(0, 1e4), st.integers(0, 500)), max_size=8),
       named=st.integers(0, 8))
def test_token_loss_rows_carry_the_eval_items_ids_else_their_numbers(losses, named):
    import torch

    columns = {"loss_sum": torch.tensor([loss for loss, _ in losses], dtype=torch.float64),
               "tokens": torch.tensor([tokens for _, tokens in losses], dtype=torch.long)}
    data = TrainingData(None, None, [Item(f"ex{n}", "text") for n in range(named)])
    rows = list(LanguageModel(config("fill-mask").task).token_loss_rows(columns, data))
    assert [row["id"] for row in rows] == [f"ex{n}" if n < named else str(n) for n in range(len(losses))]
    assert [row["stats"]["loss"] for row in rows] == [[loss, tokens] for loss, tokens in losses]
    assert all(row["stats"]["perplexity"] == row["stats"]["loss"] for row in rows)


def test_the_default_eval_loss_is_the_mean_of_the_per_example_losses():
    import torch

    class Trained(TrainingTask, Plain):
        pass

    assert Trained(config("text-classification").task).eval_metrics({"loss": torch.tensor([1.0, 2.0, 6.0])},
                                                                    None) == {"loss": 3.0}
