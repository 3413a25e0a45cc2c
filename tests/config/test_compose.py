"""Every option of every config group composes and validates; bad input fails in one line, leaving nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import schema
from experiments.config.validate import available_options, compose, conf_dir, to_typed
from experiments.errors import ExperimentError

# Options that need a value the user must supply (e.g. their own files) get it here.
REQUIRED = {
    ("dataset", "csv"): ["dataset.data_files.train=train.csv"],
    ("dataset", "json"): ["dataset.data_files.train=train.jsonl"],
    ("model", "local"): ["model.name_or_path=/some/checkpoint"],
}
GROUPS = sorted(p.name for p in conf_dir().iterdir() if p.is_dir() and p.name not in ("hydra",))


def _all_options():
    for group in GROUPS:
        for option in available_options(group):
            yield group, option


@pytest.mark.parametrize("group,option", list(_all_options()))
def test_every_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"] + REQUIRED.get((group, option), [])
    typed = to_typed(compose(overrides))
    assert isinstance(typed, schema.ExperimentConfig)
    if group == "model":
        assert typed.model.name == option or option == "local"
    if group == "dataset":
        assert typed.dataset.name == option


def test_every_group_has_options():
    for group in ("model", "tokenizer", "dataset", "collator", "trainer", "logger", "paths", "experiment", "debug"):
        assert available_options(group), f"conf/{group}/ has no options"


def test_defaults_are_the_documented_experiment():
    typed = to_typed(compose([]))
    assert typed.mode == "train"
    assert typed.model.name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    assert typed.dataset.name == "bbc_news"
    assert typed.collator.name == "dynamic"
    assert typed.trainer.backend == "accelerate"


def test_overrides_reach_the_typed_config():
    typed = to_typed(compose(["model=bert", "dataset=mrpc", "trainer.lr=3e-5", "collator=static"]))
    assert typed.model.name_or_path == "google-bert/bert-base-uncased"
    assert typed.dataset.text_pair_column == "sentence2"
    assert typed.trainer.lr == pytest.approx(3e-5)
    assert typed.collator.name == "static"


def test_experiment_preset_overrides_groups():
    typed = to_typed(compose(["experiment=mrpc_minilm"]))
    assert typed.dataset.name == "mrpc" and typed.model.name == "minilm"
    assert typed.objective == "eval_f1"


@pytest.mark.parametrize("overrides,needle", [
    (["trainer.lr=-1"], "trainer.lr"),
    (["trainer.per_device_batch_size=0"], "trainer.per_device_batch_size"),
    (["trainer.scheduler=sawtooth"], "linear"),
    (["trainer.mixed_precision=fp8"], "bf16"),
    (["collator.name=ragged"], "dynamic"),
    (["logger.trackers=[mlflow]"], "wandb"),
    (["mode=serve"], "infer"),
])
def test_bad_values_raise_naming_key_and_allowed(overrides, needle):
    with pytest.raises(ExperimentError) as info:
        to_typed(compose(overrides))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


BAD_CLI = [
    (["model=gpt9"], "unknown model option 'gpt9'", "minilm"),
    (["trainer.lrr=1e-4"], "unknown config key 'trainer.lrr'", "lr"),
    (["trainer.lr=fast"], "trainer.lr", "fast"),
    (["trainer.lr=-0.1"], "trainer.lr", "> 0"),
    (["dataset=imagenet"], "unknown dataset option 'imagenet'", "mrpc"),
    (["-m", "trainer.lr=1e-4,-1"], "trainer.lr", "> 0"),
]


@pytest.mark.parametrize("argv,first,second", BAD_CLI)
def test_cli_bad_input_is_one_line_and_leaves_no_run_dir(cli, tmp_path, argv, first, second):
    result = cli(*argv, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert first in lines[0] and second in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_cli_missing_data_file_is_one_line_and_leaves_no_run_dir(cli, tmp_path):
    result = cli("dataset=csv", f"dataset.data_files.train={tmp_path}/nope.csv", f"hydra.run.dir={tmp_path}/run",
                 cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "nope.csv" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_help_and_cfg_are_fast_and_need_no_validation(cli, tmp_path):
    result = cli("--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0
    assert "all-MiniLM-L6-v2" in result.stdout
    assert not any(Path(tmp_path).iterdir())
