"""Rewards for reinforcement tuning (``tuning=grpo``), named in config (``tuning.rewards``), never code edits.

Built in, from the metrics this project ships (each in [0, 1], per completion):

* ``chrf`` / ``bleu``: sentence chrF / BLEU (sacrebleu) of the completion against the row's reference;
* ``rouge1`` / ``rouge2`` / ``rougeL``: ROUGE F-measure (rouge_score) against the reference;
* ``exact_match``: 1 when the completion equals the reference (whitespace and case ignored);
* ``length``: 1 at ``tuning.reward_options.length.target_words`` words, falling linearly to 0 at twice as far;
* ``format``: 1 when the completion matches ``tuning.reward_options.format.pattern`` (a regular expression).

A user's reward is ``module:function``, called as TRL calls rewards: ``function(prompts=..., completions=...,
reference=..., **columns) -> list of floats``, one per completion. It is refused in one line if it cannot be
imported or does not take those arguments; a reward that returns the wrong number of values, or NaN, stops the run
in one line at the first step that shows it (:class:`Reward` checks every call).
"""
from __future__ import annotations

import importlib
import inspect
import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from experiments.errors import DataError, ExperimentError

REFERENCE_REWARDS = ("chrf", "bleu", "rouge1", "rouge2", "rougeL", "exact_match")
BUILT_IN = REFERENCE_REWARDS + ("length", "format")


def completion_text(completion: Any) -> str:
    """A completion's text: TRL passes chat completions as a list of messages."""
    if isinstance(completion, list):
        return "".join(str(message.get("content", "")) for message in completion if isinstance(message, dict))
    return str(completion)


def _scores(name: str, texts: Sequence[str], references: Sequence[Any]) -> List[float]:
    if name in ("chrf", "bleu"):
        import sacrebleu

        score = sacrebleu.sentence_chrf if name == "chrf" else sacrebleu.sentence_bleu
        return [score(text, [str(ref)]).score / 100.0 for text, ref in zip(texts, references)]
    if name.startswith("rouge"):
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([name])
        return [scorer.score(str(ref), text)[name].fmeasure for text, ref in zip(texts, references)]
    return [float(" ".join(text.lower().split()) == " ".join(str(ref).lower().split()))
            for text, ref in zip(texts, references)]


def _length(texts: Sequence[str], target_words: int) -> List[float]:
    return [max(0.0, 1.0 - abs(len(text.split()) - target_words) / target_words) for text in texts]


class Reward:
    """One reward function as TRL calls it (its ``__name__`` is the metric TRL logs), checked at every call."""

    def __init__(self, name: str, function: Callable[..., Sequence[Any]], options: Optional[Dict[str, Any]] = None):
        self.__name__ = name
        self.function, self.options = function, dict(options or {})
        self.calls = 0

    def __call__(self, prompts: List[Any], completions: List[Any], **columns: Any) -> List[float]:
        self.calls += 1
        values = list(self.function(prompts=prompts, completions=completions, **self.options, **columns))
        if len(values) != len(completions):
            raise DataError(f"reward '{self.__name__}' returned {len(values)} values for {len(completions)} "
                            f"completions (call {self.calls}); it must return one number per completion")
        bad = [i for i, v in enumerate(values) if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise DataError(f"reward '{self.__name__}' returned {values[bad[0]]!r} for completion {bad[0]} "
                            f"(call {self.calls}); rewards must be finite numbers")
        return [float(v) for v in values]


def _built_in(name: str) -> Callable[..., List[float]]:
    def reference_reward(prompts, completions, reference=None, **_):
        if reference is None:
            raise DataError(f"reward '{name}' needs a reference per prompt: set dataset.label_column to the column "
                            f"holding it")
        return _scores(name, [completion_text(c) for c in completions], reference)

    def length_reward(prompts, completions, target_words=20, **_):
        return _length([completion_text(c) for c in completions], int(target_words))

    def format_reward(prompts, completions, pattern=".+", **_):
        compiled = re.compile(pattern, re.DOTALL)
        return [float(compiled.fullmatch(completion_text(c).strip()) is not None) for c in completions]

    return {"length": length_reward, "format": format_reward}.get(name, reference_reward)


def import_function(path: str) -> Callable[..., Sequence[Any]]:
    """``module:function`` imported, and checked to take ``prompts`` and ``completions`` (one line if not)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ExperimentError(f"tuning.rewards: '{path}' is neither a built-in reward ({', '.join(BUILT_IN)}) nor "
                              f"module:function")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ExperimentError(f"tuning.rewards: cannot import '{path}': {str(exc).splitlines()[0]}") from None
    if not callable(function):
        raise ExperimentError(f"tuning.rewards: '{path}' is not a function")
    try:
        inspect.signature(function).bind(prompts=[], completions=[], reference=[])
    except TypeError:
        raise ExperimentError(f"tuning.rewards: '{path}' must accept prompts=, completions= and the dataset's columns "
                              f"as keywords (def {attribute}(prompts, completions, **columns))") from None
    except ValueError:  # a builtin without a signature: it is called and checked at the first step
        pass
    return function


def build_rewards(names: Sequence[str], options: Dict[str, Dict[str, Any]]) -> List[Reward]:
    """The :class:`Reward` objects for ``tuning.rewards`` (built-in names or ``module:function``)."""
    if not names:
        raise ExperimentError("tuning.rewards: name at least one reward (e.g. tuning.rewards=[chrf])")
    rewards = []
    for name in names:
        function = _built_in(name) if name in BUILT_IN else import_function(name)
        rewards.append(Reward(name.replace(":", "."), function, (options or {}).get(name)))
    return rewards
