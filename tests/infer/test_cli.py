"""`python run.py mode=infer ...` as a user types it: one-line errors, sweeps, the train -> infer chain."""
from __future__ import annotations

import json

import pytest


def test_empty_input_file_exits_2_with_one_line_and_no_run_dir(cli, tiny_models, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    run_dir = tmp_path / "run"
    result = cli("mode=infer", "task=text-classification", "model=local",
                 f"model.name_or_path={tiny_models['classifier']}", f"inference.input_file={empty}",
                 f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is empty" in errors[0]
    assert not run_dir.exists()


def test_unknown_task_exits_2(cli, tmp_path):
    result = cli("mode=infer", "task=ner", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "error: unknown task option 'ner'" in result.stderr and "zero-shot-classification" in result.stderr


def test_infer_multirun_basic_launcher_one_run_dir_per_combination(cli, tiny_models, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("hydra/launcher=basic", "mode=infer", "task=text-classification", "model=local",
                 f"model.name_or_path={tiny_models['classifier']}", "inference.batch_size=1,4",
                 "inference.path=pipeline,manual", "inference.inputs=[good film,bad film,fine]",
                 "inference.num_threads=1", f"hydra.sweep.dir={sweep}", multirun=True)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    combos = set()
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert {"items_per_second", "latency_p50_ms", "peak_memory_mb"} <= set(metrics["final"])
        assert len((run / "predictions.jsonl").read_text().splitlines()) == 3
        combos.add((metrics["batch_size"], metrics["path"]))
    assert combos == {(1, "pipeline"), (1, "manual"), (4, "pipeline"), (4, "manual")}


@pytest.mark.slow
def test_train_then_infer_with_the_best_checkpoint(cli, tmp_path, shared_data):
    """mode=train writes best/; mode=infer model=local model.name_or_path=<run>/best reads it."""
    train_dir = tmp_path / "train"
    result = cli("experiment=sst2_minilm", "debug=fast", f"paths.mirror={shared_data}", "logger=none",
                 f"hydra.run.dir={train_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (train_dir / "best" / "config.json").exists()
    infer_dir = tmp_path / "infer"
    result = cli("mode=infer", "task=sentiment-analysis", "dataset=sst2", "model=local",
                 f"model.name_or_path={train_dir / 'best'}", f"paths.mirror={shared_data}",
                 "inference.max_samples=16", f"hydra.run.dir={infer_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((infer_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["final"]["accuracy"] <= 1.0 and metrics["num_items"] == 16
    labels = {json.loads(line)["output"]["label"] for line in (infer_dir / "predictions.jsonl").open()}
    assert labels <= {"negative", "positive"}  # the id2label the training run saved
