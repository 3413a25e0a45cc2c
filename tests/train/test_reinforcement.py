"""Reinforcement tuning (tuning=grpo, experiments.train.reinforcement): TRL's GRPOTrainer on the HF Trainer spine
samples groups of completions, scores them with rewards named in config, logs the rewards' mean and spread, the KL
and the completion lengths per step, and evaluates the task's own metric; a reward that cannot be imported, has the
wrong signature, or returns NaN / the wrong number of values stops in one line."""
from __future__ import annotations

import json
import math
import textwrap

import pytest

GRPO = ["tuning=grpo", "task=translation", "model=local", "dataset=multi30k", "dataset.train_split=validation",
        "dataset.eval_split=test", "dataset.max_train_samples=16", "dataset.max_eval_samples=4",
        "task.max_new_tokens=6", "task.max_length=64", "trainer.mixed_precision=no", "trainer.max_steps=4",
        "trainer.per_device_batch_size=8", "trainer.lr=1e-3", "trainer.warmup_ratio=0.0", "trainer.log_every_n_steps=1",
        "trainer.eval_before_training=true", "trainer.eval_generate_samples=4", "trainer.save_steps=2",
        "tuning.num_generations=4", "logger=csv"]


def _user_rewards(folder):
    """A module of user rewards, importable as ``user_rewards`` with ``folder`` on PYTHONPATH."""
    (folder / "user_rewards.py").write_text(textwrap.dedent("""
        def short(prompts, completions, **columns):
            return [1.0 / (1 + len(str(c).split())) for c in completions]

        def nan(prompts, completions, **columns):
            return [float("nan")] * len(completions)

        def too_few(prompts, completions, **columns):
            return [0.0]

        def no_keywords(text):
            return 0.0
    """))
    return {"PYTHONPATH": str(folder)}


@pytest.mark.slow
def test_grpo_logs_rewards_kl_and_lengths_per_step_and_the_task_metric(cli, tiny_models, shared_data, tmp_path):
    run = tmp_path / "run"
    env = _user_rewards(tmp_path)
    result = cli(*GRPO, f"model.name_or_path={tiny_models['gpt2']}", f"paths.mirror={shared_data}", "peft=lora",
                 "tuning.rewards=[chrf,user_rewards:short]", "tuning.reward_weights=[1.0,0.5]",
                 f"hydra.run.dir={run}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    steps = metrics["train_log"]
    assert [row["step"] for row in steps] == [1, 2, 3, 4]
    for row in steps:
        assert {"reward", "reward_std", "kl", "completions_mean_length"} <= set(row)
        assert math.isfinite(row["reward"]) and row["reward_std"] >= 0 and 0 < row["completions_mean_length"] <= 6
    assert metrics["history"][0]["step"] == 0 and metrics["history"][-1]["step"] == 4
    assert "eval_chrf" in metrics["history"][-1] and metrics["best"]["metric"] == "eval_bleu"
    assert (run / "last" / "model.safetensors").exists()


@pytest.mark.parametrize("rewards, message", [
    ("[nope]", "tuning.rewards: 'nope' is neither a built-in reward"),
    ("[user_rewards:missing]", "tuning.rewards: cannot import 'user_rewards:missing'"),
    ("[user_rewards:no_keywords]", "must accept prompts=, completions="),
    ("[user_rewards:nan]", "reward 'user_rewards.nan' returned nan for completion 0 (call 1)"),
    ("[user_rewards:too_few]", "reward 'user_rewards.too_few' returned 1 values for 8 completions (call 1)"),
])
def test_a_bad_reward_stops_in_one_line(cli, tiny_models, shared_data, tmp_path, rewards, message):
    result = cli(*GRPO, f"model.name_or_path={tiny_models['gpt2']}", f"paths.mirror={shared_data}",
                 f"tuning.rewards={rewards}", "trainer.eval_before_training=false", f"hydra.run.dir={tmp_path}/run",
                 env=_user_rewards(tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in result.stderr


def test_a_group_that_does_not_divide_the_rollout_is_one_line(cli, tiny_models, shared_data, tmp_path):
    result = cli(*GRPO, f"model.name_or_path={tiny_models['gpt2']}", f"paths.mirror={shared_data}",
                 "tuning.num_generations=3", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "tuning.num_generations=3 must divide the rollout batch of 8" in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_sweep_over_the_group_size(tiny_models, shared_data, tmp_path):
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweep"))
    from sweep_helpers import explain, run_sweep, summary

    sweep_dir = tmp_path / "multirun" / "groups"
    overrides = [o for o in GRPO if not o.startswith(("tuning.num_generations", "trainer.max_steps"))]
    result = run_sweep([*overrides, f"model.name_or_path={tiny_models['gpt2']}", f"paths.mirror={shared_data}",
                        "trainer.max_steps=2", "trainer.eval_before_training=false", "tuning.num_generations=2,4",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    jobs = summary(sweep_dir)["jobs"]
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"finished"}
    for job in jobs:
        config = yaml.safe_load((sweep_dir / job["run_dir"] / "config.yaml").read_text())
        metrics = json.loads((sweep_dir / job["run_dir"] / "metrics.json").read_text())
        assert config["tuning"]["num_generations"] in (2, 4) and metrics["train_log"][-1]["reward_std"] >= 0


@pytest.mark.slow
def test_grpo_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(cli, tiny_models, shared_data, tmp_path):
    """SIGKILL after the step-2 checkpoint, then ``trainer.resume=true``: the same sampled rollouts (their rewards,
    lengths and KL), losses and final metrics as the uninterrupted run: the rollout RNG is restored with the rest."""
    from cli_helpers import assert_same_run, kill_when

    env = _user_rewards(tmp_path)
    overrides = [*GRPO, f"model.name_or_path={tiny_models['gpt2']}", f"paths.mirror={shared_data}", "peft=lora",
                 "trainer.max_steps=6", "trainer.save_total_limit=10", "tuning.rewards=[chrf,user_rewards:short]"]
    reference = cli(*overrides, f"hydra.run.dir={tmp_path}/reference", env=env)
    assert reference.returncode == 0, reference.stderr[-3000:]
    run = tmp_path / "killed"
    kill_when(run / "checkpoints" / "checkpoint-2" / "trainer_state.json", *overrides, f"hydra.run.dir={run}", env=env)
    resumed = cli(*overrides, "trainer.resume=true", f"hydra.run.dir={run}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref, res = (json.loads((folder / "metrics.json").read_text()) for folder in (tmp_path / "reference", run))
    assert res["resumed_from"] and int(res["resumed_from"].rsplit("-", 1)[1]) < ref["final"]["global_step"] == 6
    assert {"reward", "reward_std", "kl", "completions_mean_length"} <= set(ref["train_log"][-1])
    assert_same_run(res, ref, ("eval_loss", "eval_bleu", "eval_chrf"))


@pytest.mark.slow
def test_two_processes_run_the_groups_at_the_same_global_batch(cli, tiny_models, shared_data, tmp_path):
    """gloo DDP through ``trainer.num_processes=2`` (4 completions per process) against one process of 8: the same
    step-0 evaluation (greedy generation), the same steps, and finite rewards, KL and lengths at every step. The
    sampled rollouts themselves differ: each process samples its share of the groups from its own random stream."""
    overrides = [*(o for o in GRPO if not o.startswith("trainer.per_device")), f"paths.mirror={shared_data}",
                 f"model.name_or_path={tiny_models['gpt2']}", "peft=lora", "trainer.save_model=false",
                 "tuning.rewards=[chrf]"]
    one = cli(*overrides, "trainer.per_device_batch_size=8", f"hydra.run.dir={tmp_path}/one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli(*overrides, "trainer.per_device_batch_size=4", "trainer.num_processes=2", f"hydra.run.dir={tmp_path}/two")
    assert two.returncode == 0, two.stderr[-6000:]
    m1, m2 = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    assert m2["num_processes"] == 2 and m2["distributed_type"] == "MULTI_CPU"
    assert m1["global_batch_size"] == m2["global_batch_size"] == 8
    for key in ("eval_bleu", "eval_chrf"):
        assert m2["history"][0][key] == pytest.approx(m1["history"][0][key], rel=1e-6), key
    assert [row["step"] for row in m2["train_log"]] == [row["step"] for row in m1["train_log"]] == [1, 2, 3, 4]
    for row in m2["train_log"]:
        assert all(math.isfinite(row[key]) for key in ("reward", "reward_std", "kl", "completions_mean_length"))
