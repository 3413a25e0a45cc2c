"""Fuzzed config values, property-based: every numeric key at 0, negative, huge or non-finite, every string
key empty or odd. The checks the CLI runs before anything is written (``check_overrides``: compose + typed
schema) either accept the value, and then the libraries it reaches take it, or stop with ONE line naming the
key. A few values that pass those checks but meet a model or tokenizer limit run end to end (``slow``).
"""
from __future__ import annotations

import dataclasses
import typing

import pytest
from faults import TINY, assert_user_error, changed, run, snapshot
from hypothesis import example, given, settings
from hypothesis import strategies as st

from experiments.config import schema
from experiments.errors import ExperimentError

GROUPS = {"trainer": schema.TrainerConfig, "tokenizer": schema.TokenizerConfig, "dataset": schema.DatasetConfig,
          "collator": schema.CollatorConfig, "peft": schema.PeftConfig, "inference": schema.InferenceConfig,
          "task": schema.TaskConfig, "model": schema.ModelConfig, "logger": schema.LoggerConfig}


def _keys(kind: type) -> list:
    """Dotted keys of the schema whose type is ``kind`` (int, float or str), Optional ones included."""
    return sorted(f"{group}.{item}" for group, cls in GROUPS.items()
                  for item, hint in typing.get_type_hints(cls).items()
                  if hint is kind or (typing.get_origin(hint) is typing.Union and kind in typing.get_args(hint)))


INT_KEYS, FLOAT_KEYS, STR_KEYS = _keys(int), _keys(float), _keys(str)
INTS = st.sampled_from(["0", "-1", "1", "-9223372036854775809", "2147483648", "4294967296", "9223372036854775807",
                        "9223372036854775808", str(10 ** 21), "1.5", "abc", "null", "''", "inf"])
FLOATS = st.sampled_from(["0", "0.0", "-1", "-0.0", "1e-300", "1e308", "inf", "-inf", "nan", str(2 ** 64), "abc",
                          "null"])
STRINGS = st.one_of(
    st.sampled_from(["''", "' '", "'\\t'", "null", "'???'", "'${oc.env:NO_SUCH_VARIABLE_X}'", "'${nope}'", "'a=b'",
                     "'[1,2]'", "'{a: 1}'", "'..'", "'/'", "'x\\\\y'", "'é日本'", "'${'"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(
        lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"),
)
OVERRIDES = st.one_of(
    st.tuples(st.sampled_from(INT_KEYS), INTS),
    st.tuples(st.sampled_from(FLOAT_KEYS), FLOATS),
    st.tuples(st.sampled_from(STR_KEYS), STRINGS),
)


def assert_names_key(exc: BaseException, key: str) -> None:
    message = str(exc)
    assert isinstance(exc, ExperimentError), f"{type(exc).__name__}: {message}"
    assert message.strip() and "\n" not in message.strip(), message
    assert key in message or key.split(".")[-1] in message, f"{key} not named in: {message}"


def assert_libraries_take_it(typed) -> None:
    """What an accepted config hands to torch / numpy: 64-bit integers, usable seeds, finite numbers."""
    import math

    import numpy as np
    import torch

    np.random.seed(typed.trainer.seed)
    np.random.default_rng(typed.dataset.split_seed)
    torch.Generator().manual_seed(typed.trainer.seed)
    for group in GROUPS:
        node = getattr(typed, group)
        for item in dataclasses.fields(node):
            value = getattr(node, item.name)
            if isinstance(value, int) and not isinstance(value, bool):
                torch.tensor(value, dtype=torch.int64)
            elif isinstance(value, float):
                assert math.isfinite(value), f"{group}.{item.name}={value}"


@given(override=OVERRIDES)
def test_config_value_is_accepted_or_one_line(override):
    from experiments.config.validate import check_overrides, compose, to_typed

    key, value = override
    args = [*TINY, f"{key}={value}"]
    try:
        check_overrides(args)
    except Exception as exc:  # noqa: BLE001 - the property: nothing but a one-line error naming the key
        assert_names_key(exc, key)
    else:
        assert_libraries_take_it(to_typed(compose(args)))


@given(overrides=st.lists(OVERRIDES, min_size=2, max_size=4, unique_by=lambda kv: kv[0]))
@settings(max_examples=max(10, settings.default.max_examples // 2))
def test_several_bad_values_name_one_of_their_keys(overrides):
    from experiments.config.validate import check_overrides

    try:
        check_overrides([*TINY, *(f"{k}={v}" for k, v in overrides)])
    except Exception as exc:  # noqa: BLE001
        message = str(exc)
        assert isinstance(exc, ExperimentError) and "\n" not in message.strip(), f"{type(exc).__name__}: {message}"
        assert any(k in message or k.split(".")[-1] in message for k, _ in overrides), message


def test_every_int_key_refuses_more_than_64_bits():
    """One case per key, not drawn: no integer key passes a value torch and numpy cannot hold."""
    from experiments.config.validate import check_overrides

    for key in INT_KEYS:
        with pytest.raises(ExperimentError) as info:
            check_overrides([*TINY, f"{key}={2 ** 63}"])
        assert key.split(".")[-1] in str(info.value), str(info.value)


# --- limits of the model and tokenizer, end to end ----------------------------------------------------------

LIMITS = st.sampled_from([
    ["tokenizer.max_length=100000"], [f"tokenizer.max_length={2 ** 62}"], ["tokenizer.max_length=1"],
    ["collator=static", "tokenizer.max_length=4096"], ["collator.pad_to_multiple_of=100000"],
    ["trainer.per_device_batch_size=1000000000"], ["trainer.gradient_accumulation_steps=1000000"],
    ["trainer.seed=4294967296"], ["trainer.seed=-1"], ["dataset.split_seed=-5"], ["trainer.warmup_steps=1000000"],
    ["trainer.log_every_n_steps=1000000000"], ["trainer.metric_for_best=''"], ["trainer.max_grad_norm=0"],
    ["dataset.max_train_samples=1"], ["trainer.main_process_port=0"], ["task.min_new_tokens=-1"],
])


@pytest.mark.slow
@given(extra=LIMITS)
@example(extra=["tokenizer.max_length=100000"])  # clamped to the model's 512 positions, with a warning
@example(extra=["tokenizer.truncation=false"])  # BBC articles longer than 512 tokens: one line, not a crash
@settings(max_examples=max(2, settings.default.max_examples // 50))
def test_cli_limit_is_honoured_or_one_line(extra, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-limits")
    before = snapshot(folder)
    result = run(*TINY, *extra, f"hydra.run.dir={folder}/run", cwd=folder, timeout=300)
    if extra == ["tokenizer.max_length=100000"]:
        assert result.returncode == 0 and "tokenizer.max_length=100000 is more than the model takes (512 tokens): " \
            "using 512" in result.stdout + result.stderr, result.stderr[-2000:]
    if result.returncode == 0:
        assert (folder / "run" / "metrics.json").is_file(), result.stderr[-2000:]
        return
    assert_user_error(result)
    assert not (folder / "run").exists(), "a partly written run dir was left behind"
    assert not changed(before, snapshot(folder))
