"""Preference tuning (tuning=dpo, experiments.train.preference): TRL's DPOTrainer on the HF Trainer spine learns
to prefer real translations over wrong ones, with the task's own metric at every evaluation; bad preference rows
stop before the model loads, naming the split, row and column; runs that do not use it never import TRL."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.errors import DataError


def _write_pairs(shared_data: Path, folder: Path, train: int = 64, held_out: int = 16, seen: bool = False) -> Path:
    """Multi30k en -> de: the reference translation chosen, another sentence's translation rejected; ``seen``:
    the validation rows are the first train rows (what a tiny random model can learn in a few steps)."""
    english = (shared_data / "translation" / "multi30k" / "val.en").read_text(encoding="utf-8").splitlines()
    german = (shared_data / "translation" / "multi30k" / "val.de").read_text(encoding="utf-8").splitlines()
    folder.mkdir(parents=True, exist_ok=True)
    evaluation = range(held_out) if seen else range(train, train + held_out)
    for split, rows in (("train", range(train)), ("validation", evaluation)):
        lines = [json.dumps({"prompt": english[i], "chosen": german[i], "rejected": german[(i + 7) % len(german)]},
                            ensure_ascii=False) for i in rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _dpo_overrides(pairs: Path, model: Path) -> list:
    return ["tuning=dpo", "task=translation", "model=local", f"model.name_or_path={model}", "dataset=json",
            f"dataset.data_files.train={pairs / 'train.jsonl'}", f"dataset.data_files.validation={pairs / 'validation.jsonl'}",
            "dataset.text_column=prompt", "task.max_new_tokens=8", "task.max_length=64", "trainer.mixed_precision=no",
            "trainer.epochs=2", "trainer.per_device_batch_size=8", "trainer.lr=3e-2", "tuning.beta=0.5", "trainer.warmup_ratio=0.0",
            "trainer.log_every_n_steps=2", "trainer.eval_before_training=true", "trainer.eval_generate_samples=8",
            "logger=csv"]


@pytest.mark.slow
def test_dpo_learns_the_preference_and_evaluates_the_task_metric(cli, tiny_models, shared_data, tmp_path):
    pairs = _write_pairs(shared_data, tmp_path / "pairs", seen=True)
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
    # the tuned model runs as a translator through mode=infer
    inferred = cli("mode=infer", "task=translation", "model=local", f"model.name_or_path={run}/last", "dataset=multi30k",
                   f"paths.mirror={shared_data}", "inference.max_samples=4", "task.max_new_tokens=4",
                   "inference.progress=false", f"hydra.run.dir={tmp_path}/infer")
    assert inferred.returncode == 0, inferred.stderr[-3000:]


@pytest.mark.parametrize("change, message", [
    (lambda row, i: {**row, "chosen": row["rejected"]}, "chosen equals rejected in all"),
    (lambda row, i: {k: v for k, v in row.items() if k != "rejected"}, "has no column(s) ['rejected']"),
    (lambda row, i: {**row, "prompt": "  "} if i == 5 else row, "split 'train' row 5: column 'prompt'"),
])
def test_bad_preference_rows_stop_before_the_model_loads(cli, tiny_models, shared_data, tmp_path, change, message):
    pairs = _write_pairs(shared_data, tmp_path / "pairs", train=16, held_out=4)
    for split in ("train", "validation"):  # both files: the json reader wants the same columns in each
        path = pairs / f"{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("\n".join(json.dumps(change(row, i)) for i, row in enumerate(rows)) + "\n")
    result = cli(*_dpo_overrides(pairs, tiny_models["gpt2"]), f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in result.stderr


def test_an_encoder_only_model_is_refused_in_one_line(cli, shared_data, tmp_path):
    pairs = _write_pairs(shared_data, tmp_path / "pairs", train=8, held_out=4)
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

    pairs = _write_pairs(shared_data, tmp_path / "pairs", train=16, held_out=8, seen=True)
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
