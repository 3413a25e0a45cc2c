"""experiments.train.trl_spine.TaskMetrics: a TRL trainer's per-step metrics averaged (NaN left out), the task's
generated metrics first and the preferred metric next, '/' out of every name, the dict changed in place."""
from __future__ import annotations

import math

import pytest

from experiments.train.trl_spine import TaskMetrics


class _Trainer:
    """The part of transformers.Trainer that TaskMetrics.log ends in."""

    def __init__(self, *args, **kwargs):
        self.logged = []


class _Spine(TaskMetrics, _Trainer):
    preferred_metric = "rewards_accuracies"


@pytest.fixture
def trainer(monkeypatch):
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "log", lambda self, logs, start_time=None: self.logged.append(dict(logs)))
    spine = _Spine(experiment=None, cfg=None)
    spine.model = type("M", (), {"training": False})()
    spine._metrics = {"train": {}, "eval": {}}
    return spine


def test_eval_logs_put_generated_metrics_first_then_the_preferred_one(trainer):
    trainer._generated = {"eval_bleu": 3.0, "eval_chrf": 20.0}
    trainer._metrics["eval"] = {"rewards/margins": [1.0, 3.0], "rewards/accuracies": [0.5, float("nan"), 1.0],
                                "logps/chosen": [float("nan")]}
    logs = {"eval_loss": 0.6, "eval_runtime": 1.0}
    trainer.log(logs)
    assert list(logs) == ["eval_bleu", "eval_chrf", "eval_rewards_accuracies", "eval_loss", "eval_runtime",
                          "eval_rewards_margins"]
    assert logs["eval_rewards_accuracies"] == 0.75 and logs["eval_rewards_margins"] == 2.0
    assert trainer.logged == [logs] and trainer._metrics["eval"] == {}


def test_train_logs_average_trl_metrics_without_generated_ones(trainer):
    trainer.model.training = True
    trainer._generated = {"eval_bleu": 3.0}  # only evaluations carry them
    trainer._metrics["train"] = {"reward": [0.2, 0.4], "completions/mean_length": [5.0]}
    logs = {"loss": 0.1}
    trainer.log(logs)
    assert logs == {"loss": 0.1, "reward": pytest.approx(0.3), "completions_mean_length": 5.0}
    assert all("/" not in key and not (isinstance(v, float) and math.isnan(v)) for key, v in logs.items())
