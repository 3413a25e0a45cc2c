"""experiments.metrics.rewards: built-in rewards equal the metric libraries' own sentence scores, a user's
module:function is checked when named, and any call returning the wrong number of values or a non-finite one
stops in one line naming the reward."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.errors import DataError, ExperimentError
from experiments.metrics import rewards


def _call(name, completions, references, options=None):
    (reward,) = rewards.build_rewards([name], {name: options} if options else {})
    return reward(prompts=["p"] * len(completions), completions=completions, reference=references)


def test_reference_rewards_equal_the_libraries_sentence_scores():
    import sacrebleu
    from rouge_score import rouge_scorer

    hyps, refs = ["Ein Hund rennt im Park.", "Zwei Männer."], ["Ein Hund läuft im Park.", "Zwei Frauen lachen."]
    assert _call("chrf", hyps, refs) == pytest.approx([sacrebleu.sentence_chrf(h, [r]).score / 100
                                                       for h, r in zip(hyps, refs)])
    assert _call("bleu", hyps, refs) == pytest.approx([sacrebleu.sentence_bleu(h, [r]).score / 100
                                                       for h, r in zip(hyps, refs)])
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert _call("rougeL", hyps, refs) == pytest.approx([scorer.score(r, h)["rougeL"].fmeasure
                                                         for h, r in zip(hyps, refs)])
    chat = [[{"role": "assistant", "content": "Zwei Frauen  lachen."}]]  # TRL's chat completions
    assert _call("exact_match", chat, ["zwei frauen lachen."]) == [1.0]


def test_length_and_format_rules_take_their_options():
    assert _call("length", ["one two three four", "one"], [None, None], {"target_words": 4}) == [1.0, 0.25]
    assert _call("format", ["Answer: 42", "42"], [None, None], {"pattern": r"Answer: \d+"}) == [1.0, 0.0]


def test_a_reference_reward_without_references_is_one_line():
    (reward,) = rewards.build_rewards(["chrf"], {})
    with pytest.raises(DataError, match="set dataset.label_column"):
        reward(prompts=["p"], completions=["c"])


@pytest.mark.parametrize("name, message", [
    ("nope", "neither a built-in reward"), ("json:nope", "cannot import 'json:nope'"),
    ("no_such_module_here:f", "cannot import"), ("math:pi", "is not a function"),
    ("os.path:join", "must accept prompts=, completions="),
])
def test_a_user_reward_that_cannot_be_used_is_refused_when_named(name, message):
    with pytest.raises(ExperimentError, match=message):
        rewards.build_rewards([name], {})


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 8), values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                                      st.integers(-5, 5), st.none(), st.text(max_size=2)),
                                            max_size=10))
def test_any_call_with_the_wrong_count_or_a_non_finite_value_is_named(n, values):
    reward = rewards.Reward("mine", lambda prompts, completions, **_: values)
    well_formed = len(values) == n and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    if well_formed:
        assert reward(prompts=["p"] * n, completions=["c"] * n) == [float(v) for v in values]
    else:
        with pytest.raises(DataError, match=r"reward 'mine' returned .* \(call 1\)"):
            reward(prompts=["p"] * n, completions=["c"] * n)
