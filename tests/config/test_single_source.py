"""One source of truth: the schema's defaults are the default YAML's values, and the option lists the
schema validates against are the keys of the registries that implement them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import schema
from experiments.config.validate import conf_dir

# The option conf/config.yaml selects by default for each group, and the schema node it fills.
DEFAULT_OPTIONS = {
    "trainer/accelerate.yaml": schema.TrainerConfig,
    "tokenizer/default.yaml": schema.TokenizerConfig,
    "collator/dynamic.yaml": schema.CollatorConfig,
    "logger/csv.yaml": schema.LoggerConfig,
    "inference/default.yaml": schema.InferenceConfig,
    "task/text-classification.yaml": schema.TaskConfig,
    "peft/none.yaml": schema.PeftConfig,
}


def _default(item: dataclasses.Field):
    if item.default is not dataclasses.MISSING:
        return item.default
    return item.default_factory() if item.default_factory is not dataclasses.MISSING else "???"


@pytest.mark.parametrize("option,node", DEFAULT_OPTIONS.items())
def test_schema_defaults_equal_the_default_yaml(option, node):
    yaml = OmegaConf.to_container(OmegaConf.load(Path(conf_dir()) / option), resolve=False)
    defaults = {item.name: _default(item) for item in dataclasses.fields(node)}
    differing = {k: (v, defaults.get(k)) for k, v in yaml.items() if k != "defaults" and defaults.get(k) != v}
    assert differing == {}, f"{option} differs from {node.__name__} (yaml, schema): {differing}"


def test_dataset_loaders_are_the_loader_registry():
    from experiments.data.sources import LOADERS

    assert set(schema.DATASET_LOADERS) == set(LOADERS)


def test_tasks_are_the_task_registry():
    from experiments.tasks.registry import TASKS

    assert set(schema.INFER_TASKS) == set(TASKS)


def test_trackers_are_the_ones_built(tmp_path):
    from experiments.config.schema import LoggerConfig
    from experiments.tracking import build_trackers

    for name in schema.TRACKERS:
        if name != "wandb":  # needs no network, but starts a W&B process; covered in tests/test_tracking.py
            assert build_trackers(LoggerConfig(trackers=[name]), tmp_path, "run", [])[0].name == name
