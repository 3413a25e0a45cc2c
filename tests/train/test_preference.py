"""Preference tuning (tuning=dpo, experiments.train.preference): TRL's DPOTrainer on the HF Trainer spine learns
to prefer real translations over wrong ones, with the task's own metric at every evaluation; bad preference rows
stop before the model loads, naming the split, row and column; runs that do not use it never import TRL."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import write_preference_pairs
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.errors import DataError


def _dpo_overrides(pairs: Path, model: Path) -> list:
    return ["tuning=dpo", "task=translation", "model=local", f"model.name_or_path={model}", "dataset=json",
            f"dataset.data_files.train={pairs / 'train.jsonl'}", f"dataset.data_files.validation={pairs / 'validation.jsonl'}",
            "dataset.text_column=prompt", "task.max_new_tokens=8", "task.max_length=64", "trainer.mixed_precision=no",
            "trainer.epochs=2", "trainer.per_device_batch_size=8", "trainer.lr=3e-2", "tuning.beta=0.5", "trainer.warmup_ratio=0.0",
            "trainer.log_every_n_steps=2", "trainer.eval_before_training=true", "trainer.eval_generate_samples=8",
            "logger=csv"]


@pytest.mark.slow
def test_dpo_learns_the_preference_and_evaluates_the_task_metric(cli, tiny_models, shared_data, tmp_path):
    pairs = write_preference_pairs(shared_data, tmp_path / "pairs", seen=True)
    run = tmp_path / "run"
    result = cli(*_dpo_overrides(pairs, tiny_models["gpt2"]), "peft=lora", "peft.r=8", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    before, after = metrics["history"][0], metrics["history"][-1]
    assert before["step"] == 0 and after["step"] == metrics["final"]["global_step"] == 16
    # TRL's preference metrics, named without '/', and the task's metric on generated translations
    assert {"eval_rewards_accuracies", "eval_rewards_margins", "eval_logps_chosen", "eval_chrf", "eval_bleu"} <= set(after)
    assert after["eval_loss"] < before["eval_loss"] - 0.05, (before, after)
    assert after["eval_rewards_margins"] > before["eval_rewards_margins"]
    assert metrics["best"]["metric"] == "eval_bleu" and metrics["task"] == "translation"
    assert 0 < metrics["trainable_params"] < metrics["total_params"]  # LoRA: the reference is the adapter disabled
    assert (run / "last" / "model.safetensors").exists() and metrics["train_log"]
    assert (run / "best" / "model.safetensors").exists()
    # the best tuned model runs as a translator through mode=infer
    inferred = cli("mode=infer", "task=translation", "model=local", f"model.name_or_path={run}/best", "dataset=multi30k",
                   f"paths.mirror={shared_data}", "inference.max_samples=4", "task.max_new_tokens=4",
                   "inference.progress=false", f"hydra.run.dir={tmp_path}/infer")
    assert inferred.returncode == 0, inferred.stderr[-3000:]


@pytest.mark.parametrize("change, message", [
    (lambda row, i: {**row, "chosen": row["rejected"]}, "chosen equals rejected in all"),
    (lambda row, i: {k: v for k, v in row.items() if k != "rejected"}, "has no column(s) ['rejected']"),
    (lambda row, i: {**row, "prompt": "  "} if i == 5 else row, "split 'train' row 5: column 'prompt'"),
])
def test_bad_preference_rows_stop_before_the_model_loads(cli, tiny_models, shared_data, tmp_path, change, message):
    pairs = write_preference_pairs(shared_data, tmp_path / "pairs", train=16, held_out=4)
    for split in ("train", "validation"):  # both files: the json reader wants the same columns in each
        path = pairs / f"{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("\n".join(json.dumps(change(row, i)) for i, row in enumerate(rows)) + "\n")
    result = cli(*_dpo_overrides(pairs, tiny_models["gpt2"]), f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in result.stderr


def test_an_encoder_only_model_is_refused_in_one_line(cli, shared_data, tmp_path):
    pairs = write_preference_pairs(shared_data, tmp_path / "pairs", train=8, held_out=4)
    result = cli(*[o for o in _dpo_overrides(pairs, Path("unused")) if not o.startswith("model")], "model=minilm",
                 f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "needs a model that generates" in result.stderr.strip().splitlines()[-1]


class _Split(list):
    """The part of a datasets.Dataset that the row check reads."""


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 12), data=st.data())
def test_any_empty_or_missing_cell_is_named_by_split_row_and_column(rows, data):
    from experiments.train.preference import check_preference_rows

    columns = ["prompt", "chosen", "rejected"]
    split = _Split({"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(rows))
    check_preference_rows(split, "train", columns)  # well-formed: passes
    row, column = data.draw(st.integers(0, rows - 1)), data.draw(st.sampled_from(columns))
    split[row] = {**split[row], column: data.draw(st.sampled_from(["", "   ", None, 3, ["a"]]))}
    with pytest.raises(DataError, match=rf"split 'train' row {row}: column '{column}'"):
        check_preference_rows(split, "train", columns)


def test_runs_that_do_not_tune_preferences_never_import_trl():
    code = ("import sys, experiments.cli, experiments.train, experiments.train.loop, experiments.train.hf_trainer; "
            "assert 'trl' not in sys.modules, 'trl imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_an_optuna_search_over_beta_and_the_learning_rate(tiny_models, shared_data, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweep"))
    from sweep_helpers import explain, run_sweep, summary

    pairs = write_preference_pairs(shared_data, tmp_path / "pairs", train=16, held_out=8, seen=True)
    sweep_dir = tmp_path / "multirun" / "beta"
    overrides = [o for o in _dpo_overrides(pairs, tiny_models["gpt2"]) if not o.startswith("trainer.epochs")]
    result = run_sweep([*overrides, "trainer.epochs=1", "trainer.eval_before_training=false", "hparams_search=optuna",
                        "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=2", "objective=eval_rewards_margins",
                        "hydra.sweeper.direction=maximize", "tuning.beta=choice(0.1,0.5)",
                        "trainer.lr=choice(3e-2)", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    jobs = summary(sweep_dir)["jobs"]
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"finished"}
    import yaml

    betas = sorted(yaml.safe_load((sweep_dir / j["run_dir"] / "config.yaml").read_text())["tuning"]["beta"]
                   for j in jobs)
    assert betas == [0.1, 0.5]


@pytest.mark.slow
def test_dpo_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(cli, tiny_models, shared_data, tmp_path):
    """SIGKILL after the step-2 checkpoint (while later steps or checkpoints are being written), then
    ``trainer.resume=true``: the same losses, rewards and final metrics (LoRA dropout on: the RNG is restored)."""
    from cli_helpers import assert_same_run, kill_when

    pairs = write_preference_pairs(shared_data, tmp_path / "pairs", train=32, held_out=8, seen=True)
    overrides = [*_dpo_overrides(pairs, tiny_models["gpt2"]), "peft=lora", "peft.r=8", "trainer.save_steps=2",
                 "trainer.save_total_limit=10", "trainer.eval_steps=4", "trainer.log_every_n_steps=1"]
    reference = cli(*overrides, f"hydra.run.dir={tmp_path}/reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    run = tmp_path / "killed"
    kill_when(run / "checkpoints" / "checkpoint-2" / "trainer_state.json", *overrides, f"hydra.run.dir={run}")
    resumed = cli(*overrides, "trainer.resume=true", f"hydra.run.dir={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref, res = (json.loads((folder / "metrics.json").read_text()) for folder in (tmp_path / "reference", run))
    assert res["resumed_from"] and int(res["resumed_from"].rsplit("-", 1)[1]) < ref["final"]["global_step"] == 8
    assert_same_run(res, ref, ("eval_loss", "eval_rewards_margins", "eval_rewards_accuracies", "eval_bleu", "eval_chrf"))
    assert res["best"] == ref["best"] and (run / "best" / "model.safetensors").exists()


@pytest.mark.slow
def test_two_processes_equal_one_process_at_the_same_global_batch(cli, tiny_models, shared_data, tmp_path):
    """gloo DDP through ``trainer.num_processes=2`` (4 pairs per process) against one process of 8: the same losses,
    rewards and evaluations (dropout off and float32, so both compute the same function)."""
    from cli_helpers import assert_same_run

    pairs = write_preference_pairs(shared_data, tmp_path / "pairs", train=32, held_out=8, seen=True)
    overrides = [*(o for o in _dpo_overrides(pairs, tiny_models["gpt2"]) if not o.startswith("trainer.per_device")),
                 "peft=lora", "peft.r=8", "peft.dropout=0.0", "trainer.log_every_n_steps=1", "trainer.eval_steps=2",
                 "trainer.save_model=false", *(f"+model.config_overrides.{key}=0.0"
                                               for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"))]
    one = cli(*overrides, "trainer.per_device_batch_size=8", f"hydra.run.dir={tmp_path}/one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli(*overrides, "trainer.per_device_batch_size=4", "trainer.num_processes=2", f"hydra.run.dir={tmp_path}/two")
    assert two.returncode == 0, two.stderr[-6000:]
    m1, m2 = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    assert m2["num_processes"] == 2 and m2["distributed_type"] == "MULTI_CPU" and m1["num_processes"] == 1
    assert m1["global_batch_size"] == m2["global_batch_size"] == 8 and m1["final"]["global_step"] == 8
    assert_same_run(m2, m1, ("eval_loss", "eval_rewards_margins", "eval_rewards_accuracies", "eval_bleu"), rel=1e-4,
                    abs_=2e-5)  # the all-reduce sums in another order: margins near 0 differ in the 6th decimal
