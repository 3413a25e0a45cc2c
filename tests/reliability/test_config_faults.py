"""Config faults: every one stops before anything is written, in one line naming the key, exit 2."""
from __future__ import annotations

import pytest
from faults import TINY, assert_user_error, changed, run, snapshot

SECRET = "hf_" + "Ab3" * 12  # the shape of a Hugging Face token


@pytest.mark.parametrize("override,needles", [
    ("+trainer.some_typo=1", ["unknown config key 'trainer.some_typo'", "allowed keys in 'trainer'"]),
    ("+logger.projekt=x", ["unknown config key 'logger.projekt'"]),
    ("+foo=1", ["unknown config key 'foo'"]),
    ("trainer.lr=inf", ["trainer.lr", "finite"]),
    ("trainer.lr=nan", ["trainer.lr", "finite"]),
    ("trainer.max_grad_norm=-inf", ["trainer.max_grad_norm"]),
    ("dataset.validation_fraction=nan", ["dataset.validation_fraction"]),
    ("trainer.num_processes=100000", ["trainer.num_processes=100000", "CPU cores", "use at most"]),
    ("trainer.dataloader_num_workers=100000", ["trainer.dataloader_num_workers=100000", "CPU cores", "use at most"]),
    ("mode=infer inference.num_threads=100000", ["inference.num_threads=100000", "CPU cores", "use at most"]),
])
def test_bad_value_or_key_writes_nothing(tmp_path, override, needles):
    before = snapshot(tmp_path)
    result = run(*TINY, *override.split(), cwd=tmp_path)
    assert_user_error(result, *needles)
    assert snapshot(tmp_path) == before  # no outputs/, no run dir


@pytest.mark.parametrize("override", [
    f"+logger.api_key={SECRET}",
    "+logger.api_key=not-shaped-like-a-token",
    f"+model.config_overrides.note={SECRET}",
    f"logger.run_name={SECRET}",
    f"hydra.job.env_set.HF_TOKEN={SECRET}",
])
def test_secret_override_is_refused_and_reaches_no_file(tmp_path, override):
    result = run(*TINY, override, cwd=tmp_path)
    line = assert_user_error(result, "looks like a secret", "environment")
    assert SECRET not in line and "not-shaped-like-a-token" not in line
    assert snapshot(tmp_path) == {}


def test_secret_from_environment_interpolation_is_refused(tmp_path):
    """A config that pulls a secret out of the environment would write it to config.yaml: refused."""
    result = run(*TINY, "logger.run_name=${oc.env:HF_TOKEN}", cwd=tmp_path, env={"HF_TOKEN": SECRET})
    assert_user_error(result, "'logger.run_name' looks like a secret")
    assert snapshot(tmp_path) == {}


def test_secret_value_of_a_secret_env_var_pasted_anywhere_is_refused(tmp_path):
    key = "0123456789abcdef0123456789abcdef01234567"
    result = run(*TINY, f"+trainer.resume={key}", cwd=tmp_path, env={"WANDB_API_KEY": key})
    assert_user_error(result, "looks like a secret")
    assert snapshot(tmp_path) == {}


def test_model_id_override_is_honoured_offline(tmp_path):
    """The packaged MiniLM must not stand in for another id: offline, the run stops naming that id."""
    result = run(*TINY, "model.name_or_path=google-bert/bert-base-uncased", cwd=tmp_path)
    assert_user_error(result, "model 'google-bert/bert-base-uncased' not found", "looked in")
    assert snapshot(tmp_path) == {}


def test_model_dir_override_is_what_trains_and_is_recorded(tmp_path, minilm_dir):
    import json

    result = run(*TINY, f"model.name_or_path={minilm_dir}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == str(minilm_dir)
    assert metrics["model_source"] == f"local:{minilm_dir}"


def test_missing_local_model_dir(tmp_path):
    result = run(*TINY, "model.name_or_path=./no-such-model", cwd=tmp_path)
    assert_user_error(result, "no-such-model", "does not exist")
    assert changed({}, snapshot(tmp_path)) == {}


def test_a_task_that_does_not_train_stops_in_one_line(tmp_path):
    result = run(*TINY, "task=feature-extraction", cwd=tmp_path)
    assert_user_error(result, "task=feature-extraction does not train", "question-answering", "mode=infer")
    assert snapshot(tmp_path) == {}
