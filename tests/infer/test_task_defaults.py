"""`python run.py mode=infer task=<task>` with nothing else runs, like transformers' `pipeline(task)`: each
task config selects a default model and default inputs (conf/task/<task>.yaml), and the command line, or an
experiment preset, still chooses anything else."""
from __future__ import annotations

import json
import shutil

import pytest

from experiments.config import schema

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

# task -> (model name_or_path, dataset, example inputs given?, inference.max_samples)
DEFAULTS = {
    "feature-extraction": (MINILM, "bbc_news", True, None),
    "fill-mask": ("distilbert/distilroberta-base", "bbc_news", True, None),
    "question-answering": ("distilbert/distilbert-base-cased-distilled-squad", "squad", False, None),
    "sentiment-analysis": ("distilbert/distilbert-base-uncased-finetuned-sst-2-english", "sst2", False, None),
    "summarization": (SMOLLM2, "xsum", False, 8),
    "text-classification": (MINILM, "bbc_news", False, None),
    "text-generation": (SMOLLM2, "bbc_news", True, None),
    "translation": (SMOLLM2, "multi30k", False, 8),
    "zero-shot-classification": ("facebook/bart-large-mnli", "bbc_news", False, None),
}


def test_every_infer_task_has_its_defaults_here():
    assert set(DEFAULTS) == set(schema.INFER_TASKS)


@pytest.mark.parametrize("task", sorted(DEFAULTS))
def test_task_alone_selects_its_model_dataset_and_inputs(config, task):
    from experiments.infer.inputs import example_inputs

    model, dataset, has_inputs, max_samples = DEFAULTS[task]
    cfg = config(f"task={task}")
    assert cfg.task.name == task
    assert cfg.model.name_or_path == model
    assert cfg.dataset.name == dataset
    assert cfg.inference.max_samples == max_samples
    assert (cfg.inference.inputs is not None) == has_inputs
    assert cfg.inference.input_file is None and cfg.inference.split is None
    if has_inputs:  # the inputs come from conf/inference/<task>.yaml, which load_items recognises as examples
        assert 2 <= len(cfg.inference.inputs) <= 5
        assert list(cfg.inference.inputs) == example_inputs(task)


def test_fill_mask_examples_hold_a_mask_and_smollm2_is_the_gguf_file(config):
    assert all("<mask>" in text or "[MASK]" in text for text in config("task=fill-mask").inference.inputs)
    assert config("task=text-generation").model.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_training_default_is_unchanged():
    from experiments.config.validate import compose, to_typed

    typed = to_typed(compose([]))
    assert (typed.mode, typed.task.name, typed.model.name_or_path, typed.dataset.name) == \
        ("train", "text-classification", MINILM, "bbc_news")
    assert typed.inference == schema.InferenceConfig()


@pytest.mark.parametrize("overrides,expected", [
    (["task=summarization", "model=t5-small"], {"model": "google-t5/t5-small", "dataset": "xsum", "max_samples": 8}),
    (["task=summarization", "inference.max_samples=null"], {"model": SMOLLM2, "max_samples": None}),
    (["task=summarization", "inference=default"], {"max_samples": None}),
    (["task=fill-mask", "model=bert"], {"model": "google-bert/bert-base-uncased"}),
    (["task=fill-mask", "inference.inputs=[\"a [MASK] b\"]"], {"inputs": ["a [MASK] b"]}),
    (["task=text-generation", "inference.inputs=null"], {"inputs": None, "model": SMOLLM2}),
    (["task=question-answering", "dataset=csv", "dataset.data_files.validation=qa.csv"], {"dataset": "csv"}),
    (["task=question-answering", "model=minilm", "dataset=squad"], {"model": MINILM, "dataset": "squad"}),
    (["task=sentiment-analysis", "model=distilbert-sst2", "dataset=rte"], {"dataset": "rte"}),
    (["task=translation", "model=opus-mt-en-de", "debug=fast"], {"model": "Helsinki-NLP/opus-mt-en-de",
                                                                  "max_samples": 16}),
    (["task=zero-shot-classification", "model=minilm", "task.method=embedding"], {"model": MINILM}),
])
def test_the_command_line_wins(config, overrides, expected):
    cfg = config(*overrides)
    got = {"model": cfg.model.name_or_path, "dataset": cfg.dataset.name, "max_samples": cfg.inference.max_samples,
           "inputs": None if cfg.inference.inputs is None else list(cfg.inference.inputs)}
    assert {k: got[k] for k in expected} == expected


# -- experiment presets that pick a task and their own model / dataset --------------------------------------------
PRESETS = {
    "squad_minilm": ["override /task: question-answering", "override /model: minilm"],
    "xsum_smollm2_lora": ["override /task: summarization", "override /model: smollm2"],
    "multi30k_smollm2_lora": ["override /task: translation", "override /model: smollm2"],
    "bbc_smollm2_clm": ["override /task: text-generation", "override /model: smollm2",
                        "override /dataset: bbc_news"],
    "qa_on_csv_with_bert": ["override /task: question-answering", "override /model: bert",
                            "override /dataset: csv"],
    "model_only": ["override /model: bert"],
}


@pytest.fixture
def preset_conf(tmp_path, monkeypatch):
    """conf/ copied, with the presets above added under experiment/ (Hydra reads presets from conf/ only)."""
    from experiments.config.validate import conf_dir

    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    for name, defaults in PRESETS.items():
        lines = ["# @package _global_", "defaults:"] + [f"  - {d}" for d in defaults]
        (conf / "experiment" / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("EXPERIMENTS_CONF", str(conf))
    return conf


@pytest.mark.parametrize("overrides,task,model,dataset", [
    (["experiment=squad_minilm"], "question-answering", MINILM, "squad"),
    (["mode=train", "experiment=squad_minilm"], "question-answering", MINILM, "squad"),
    (["experiment=xsum_smollm2_lora"], "summarization", SMOLLM2, "xsum"),
    (["experiment=multi30k_smollm2_lora"], "translation", SMOLLM2, "multi30k"),
    (["experiment=bbc_smollm2_clm"], "text-generation", SMOLLM2, "bbc_news"),
    (["experiment=qa_on_csv_with_bert", "dataset.data_files.validation=qa.csv"], "question-answering",
     "google-bert/bert-base-uncased", "csv"),
    # a preset's group choices beat the task's defaults, wherever task= is given
    (["task=question-answering", "experiment=model_only"], "question-answering", "google-bert/bert-base-uncased",
     "squad"),
    # ... and the command line beats the preset
    (["experiment=squad_minilm", "model=bert"], "question-answering", "google-bert/bert-base-uncased", "squad"),
    (["experiment=squad_minilm", "task=summarization"], "summarization", MINILM, "xsum"),
])
def test_experiment_presets_choose_over_the_task_defaults(config, preset_conf, overrides, task, model, dataset):
    cfg = config(*overrides)
    assert (cfg.task.name, cfg.model.name_or_path, cfg.dataset.name) == (task, model, dataset)


# -- the example inputs are the source of last resort ------------------------------------------------------------
def _load(config, *overrides):
    from experiments.infer.inputs import load_items
    from experiments.tasks.registry import task_class

    cfg = config(*overrides)
    return load_items(task_class(cfg.task.name)(cfg.task), cfg)


def test_examples_are_used_alone(config):
    items, _, source = _load(config, "task=text-generation")
    assert [i.input for i in items] == list(config("task=text-generation").inference.inputs)
    assert source == "conf/inference/text-generation.yaml (the task's example inputs)"


def test_an_input_file_replaces_the_examples(config, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\n")
    items, _, source = _load(config, "task=text-generation", f"inference.input_file={prompts}")
    assert [i.input for i in items] == ["one", "two"] and source.startswith("file ")


def test_inputs_given_with_a_file_are_still_refused(config, tmp_path):
    from experiments.errors import ExperimentError

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\n")
    with pytest.raises(ExperimentError, match="both given"):
        _load(config, "task=text-generation", "inference.inputs=[mine]", f"inference.input_file={prompts}")


# -- as a user types it --------------------------------------------------------------------------------------------
def test_cli_feature_extraction_alone_runs_minilm_on_its_examples(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli("mode=infer", "task=feature-extraction", "inference.num_threads=1", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["input"] for r in rows] == ["A man is eating food.", "A man is eating a piece of bread.",
                                          "The girl is carrying a baby."]
    assert all(len(r["output"]) == 1 and len(r["output"][0][0]) == 384 for r in rows)  # [1, tokens, hidden]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == MINILM and metrics["num_items"] == 3


def test_cli_fill_mask_alone_offline_is_one_looked_in_line(cli, tmp_path):
    """distilroberta-base does not ship offline: with no mirror holding it and an empty hub cache, exit 2."""
    run_dir = tmp_path / "run"
    (tmp_path / "mirror").mkdir()
    result = cli("mode=infer", "task=fill-mask", f"paths.mirror={tmp_path / 'mirror'}", f"hydra.run.dir={run_dir}",
                 env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model 'distilbert/distilroberta-base' not found; looked in")
    assert not run_dir.exists()
