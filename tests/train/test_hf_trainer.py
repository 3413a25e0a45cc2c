"""The HF Trainer backend (``trainer=hf_trainer``, experiments.train.hf_trainer) keeps ``best/`` as our loop does:
the model of the evaluation with the best metric, the same one the run record names; and its record counts the time
inside training steps, as our loop's does."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file


def test_the_train_time_counts_the_inside_of_steps_only(monkeypatch):
    """train_runtime_s sums on_step_begin..on_step_end: what runs between steps (evaluations, checkpoints) is left
    out, as our loop's clock leaves it out (the Trainer's own train_runtime spans everything)."""
    from omegaconf import OmegaConf
    from transformers import TrainerControl, TrainerState

    from experiments.train import hf_trainer

    readings = iter([10.0, 12.5, 100.0, 101.0])  # step 1: 2.5 s, then an 87.5 s evaluation, then step 2: 1 s
    monkeypatch.setattr(hf_trainer.time, "perf_counter", lambda: next(readings))
    mirror = hf_trainer.Mirror(OmegaConf.create({"trainer": {"lr": 1e-3}}), perplexity=False)
    state, control = TrainerState(), TrainerControl()
    for _ in range(2):
        mirror.on_step_begin(None, state, control)
        mirror.on_step_end(None, state, control)
    assert mirror.step_seconds == 3.5


@pytest.mark.slow
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


@pytest.mark.parametrize("kind", ["missing", "empty folder", "cut state", "a file", "state not a dict"])
def test_a_resume_path_that_is_not_a_whole_checkpoint_is_refused_in_one_line(tmp_path, kind):
    """Any trainer.resume=<path> the HF Trainer could not load stops with ExperimentError (one line, exit 2, before
    anything loads); a whole checkpoint is taken as given."""
    from omegaconf import OmegaConf

    from experiments.errors import ExperimentError
    from experiments.train import hf_trainer

    path = tmp_path / "checkpoint-3"
    if kind == "a file":
        path.write_text("x")
    elif kind != "missing":
        path.mkdir()
        state = {"cut state": '{"global_step": ', "state not a dict": "[3]"}.get(kind)
        if state is not None:
            (path / "trainer_state.json").write_text(state)
    t = OmegaConf.create({"resume": str(path)})
    with pytest.raises(ExperimentError, match="not a complete HF Trainer checkpoint"):
        hf_trainer._resume_checkpoint(t, str(tmp_path / "run" / "checkpoints"))
    whole = tmp_path / "checkpoint-4"
    whole.mkdir()
    (whole / "trainer_state.json").write_text('{"global_step": 4}')
    assert hf_trainer._resume_checkpoint(OmegaConf.create({"resume": str(whole)}), str(tmp_path)) == str(whole)
