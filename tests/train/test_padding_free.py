"""Padding-free causal-LM training (collator.padding_free): one flattened row per batch trains exactly as
padded batches do on a model that keeps flattened examples apart, and is refused in one line on one that
does not."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

COMMON = ["model=local", "task=translation", "dataset=multi30k", "dataset.train_split=validation",
          "dataset.eval_split=test", "dataset.max_train_samples=48", "dataset.max_eval_samples=8",
          "task.max_new_tokens=8", "trainer.epochs=1", "trainer.per_device_batch_size=8", "trainer.lr=2e-3",
          "trainer.warmup_ratio=0.0", "trainer.log_every_n_steps=1", "trainer.eval_generate_samples=2",
          "trainer.save_model=false", "logger=csv", "trainer.mixed_precision=no"]


def _train(tiny_models, shared_data, run_dir, model, *extra):
    from experiments.config.validate import compose, to_typed
    from experiments.train import train

    cfg = to_typed(compose([*COMMON, f"model.name_or_path={tiny_models[model]}", f"paths.mirror={shared_data}",
                            f"paths.output_dir={run_dir}", *extra]))
    return train(cfg, run_dir)


def test_flattened_batches_train_like_padded_ones(tiny_models, shared_data, tmp_path):
    padded = _train(tiny_models, shared_data, tmp_path / "padded", "llama", "collator.padding_free=false")
    flat = _train(tiny_models, shared_data, tmp_path / "flat", "llama", "collator.padding_free=true")
    assert padded["speed"]["padding_free"] is False and flat["speed"]["padding_free"] is True
    assert flat["final"]["global_step"] == padded["final"]["global_step"] == 6
    # the same examples per step (the loop counts them from the collator, not from the one flattened row)
    ratio = flat["final"]["train_samples_per_second"] * flat["final"]["train_runtime_s"]
    assert ratio == pytest.approx(48)
    assert [r["train_loss"] for r in flat["train_log"]] == pytest.approx(
        [r["train_loss"] for r in padded["train_log"]], rel=1e-4)
    assert flat["final"]["eval_loss"] == pytest.approx(padded["final"]["eval_loss"], rel=1e-4)


def test_padding_free_on_a_model_that_mixes_flattened_examples_stops_in_one_line(cli, tiny_models, shared_data,
                                                                                 tmp_path):
    result = cli(*COMMON, f"model.name_or_path={tiny_models['opt']}", f"paths.mirror={shared_data}",
                 "collator.padding_free=true", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "collator.padding_free=true" in result.stderr and "(opt)" in result.stderr
    assert "Traceback" not in result.stderr
