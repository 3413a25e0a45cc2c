"""trainer.early_stopping_patience / _threshold: the rule on evaluation histories, and runs of both backends
that stop when their metric stalls, with why and when in metrics.json."""
from __future__ import annotations

import json

import pytest

from experiments.config.validate import compose, to_typed
from experiments.train.common import early_stop


def _cfg(*overrides: str):
    return to_typed(compose(list(overrides)))


def _history(*values, key="eval_accuracy"):
    return [{"step": 10 * (i + 1), key: v} for i, v in enumerate(values)]


def test_no_patience_never_stops():
    assert early_stop(_cfg(), "eval_accuracy", _history(0.5, 0.4, 0.3, 0.2)) is None


def test_stops_after_patience_evaluations_without_improvement():
    cfg = _cfg("trainer.early_stopping_patience=2")
    assert early_stop(cfg, "eval_accuracy", _history(0.5, 0.6, 0.6)) is None  # one stale evaluation
    stopped = early_stop(cfg, "eval_accuracy", _history(0.5, 0.6, 0.6, 0.55))
    assert stopped == {"reason": "early_stopping", "step": 40, "metric": "eval_accuracy", "best": 0.6,
                       "best_step": 20, "patience": 2, "threshold": 0.0}
    assert early_stop(cfg, "eval_accuracy", _history(0.5, 0.6, 0.6, 0.7)) is None  # improved again


def test_an_improvement_must_beat_the_threshold_and_loss_counts_downwards():
    cfg = _cfg("trainer.early_stopping_patience=2", "trainer.early_stopping_threshold=0.01")
    assert early_stop(cfg, "eval_accuracy", _history(0.5, 0.505, 0.509))["best_step"] == 10
    loss = _history(1.0, 0.9, 0.95, 0.91, key="eval_loss")  # lower is better
    assert early_stop(cfg, "eval_loss", loss)["best"] == 0.9
    assert early_stop(cfg, "eval_loss", _history(1.0, 0.9, 0.8, key="eval_loss")) is None


def test_non_finite_values_never_count_as_improvements():
    cfg = _cfg("trainer.early_stopping_patience=2")
    assert early_stop(cfg, "eval_accuracy", _history(0.5, float("nan"), float("nan")))["best"] == 0.5


def test_bad_patience_is_one_line():
    from experiments.errors import ExperimentError

    with pytest.raises(ExperimentError, match="trainer.early_stopping_patience: must be > 0"):
        _cfg("trainer.early_stopping_patience=0")


RUN = ["model=local", "dataset.max_train_samples=64", "dataset.max_eval_samples=16", "tokenizer.max_length=32",
       "trainer.per_device_batch_size=4", "trainer.max_steps=16", "trainer.eval_steps=2", "trainer.save_steps=100",
       "trainer.lr=1e-12", "trainer.save_model=false", "logger=csv", "trainer.mixed_precision=no"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["accelerate", "hf_trainer"])
def test_a_run_whose_metric_stalls_stops_early_and_says_why(tiny_models, tmp_path, backend):
    from experiments.train import train

    common = [*RUN, f"trainer={backend}", f"model.name_or_path={tiny_models['classifier']}"]
    stalled = train(_cfg(*common, "trainer.early_stopping_patience=2", f"paths.output_dir={tmp_path}/a"),
                    tmp_path / "a")
    # lr 1e-12: the metric never moves; the evaluations at steps 4 and 6 do not beat step 2's
    assert stalled["final"]["global_step"] == 6
    assert stalled["stopped"] == {"reason": "early_stopping", "step": 6, "metric": "eval_accuracy",
                                  "best": stalled["history"][0]["eval_accuracy"], "best_step": 2, "patience": 2,
                                  "threshold": 0.0}
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["stopped"]["reason"] == "early_stopping"
    full = train(_cfg(*common, f"paths.output_dir={tmp_path}/b"), tmp_path / "b")
    assert full["final"]["global_step"] == 16 and full["stopped"] == {"reason": "completed", "step": 16}
