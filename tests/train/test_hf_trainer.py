"""The HF Trainer backend (``trainer=hf_trainer``, experiments.train.hf_trainer) keeps ``best/`` as our loop does:
the model of the evaluation with the best metric, the same one the run record names."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def test_best_holds_the_weights_of_the_best_evaluation(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("debug=tiny", "logger=csv", "trainer=hf_trainer", "trainer.max_steps=6", "trainer.eval_steps=1",
                 "trainer.save_steps=1", "trainer.save_total_limit=10", "trainer.save_model=true",
                 "trainer.metric_for_best=eval_loss", "trainer.lr=3e-4", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    losses = {row["step"]: row["eval_loss"] for row in metrics["history"]}
    best_step = min(losses, key=lambda step: (losses[step], step))
    assert metrics["best"] == {"metric": "eval_loss", "value": losses[best_step], "step": best_step}
    best = load_file(run / "best" / "model.safetensors")
    saved = load_file(run / "checkpoints" / f"checkpoint-{best_step}" / "model.safetensors")
    assert best.keys() == saved.keys()
    for name, tensor in best.items():
        assert tensor.equal(saved[name]), name
    assert (run / "best" / "tokenizer.json").exists() and (run / "last" / "model.safetensors").exists()
