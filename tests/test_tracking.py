"""Tracking helpers: secrets never reach configs or logs; W&B mode follows the API key; CSV rows."""
from __future__ import annotations

from experiments.tracking import Tracking, build_trackers, flatten, scrub, wandb_mode


def test_scrub_masks_secret_keys_only():
    config = {"logger": {"api_key": "abc", "wandb_api_key": "k", "project": "p"},
              "hub": {"hf_token": "hf_x", "password": "pw", "credentials": "c"},
              "tokenizer": {"max_length": 128}, "inference": {"options": {"max_new_tokens": 20}},
              "unset": {"token": None}}
    out = scrub(config)
    assert out["logger"] == {"api_key": "***", "wandb_api_key": "***", "project": "p"}
    assert out["hub"] == {"hf_token": "***", "password": "***", "credentials": "***"}
    assert out["tokenizer"] == {"max_length": 128}
    assert out["inference"]["options"]["max_new_tokens"] == 20
    assert out["unset"]["token"] is None
    assert config["logger"]["api_key"] == "abc"  # the input is not modified


def test_flatten_joins_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": "[1, 2]", "e": None}


def test_wandb_mode_auto_follows_api_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"


def test_csv_tracker_writes_long_format_rows(tmp_path):
    from experiments.config.schema import LoggerConfig

    tracking = Tracking(build_trackers(LoggerConfig(trackers=["csv"]), tmp_path, "run", []), {"a": 1})
    tracking.log({"train_loss": 0.5, "note": "text", "nan": float("nan")}, step=3)
    tracking.finish()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["step,name,value", "3,train_loss,0.5"]


def test_wandb_run_id_is_kept_in_the_run_dir_for_resume(tmp_path):
    from experiments.tracking import wandb_run_id

    first = wandb_run_id(tmp_path)
    assert first and wandb_run_id(tmp_path) == first
    assert (tmp_path / "wandb" / "wandb_run_id").read_text().strip() == first


def test_trim_csv_log_drops_rows_after_the_resumed_step(tmp_path):
    from experiments.csv_tracker import trim_csv_log

    path = tmp_path / "metrics.csv"
    path.write_text("step,name,value\n1,train_loss,0.9\n2,train_loss,0.8\n3,train_loss,0.7\n")
    trim_csv_log(path, 2)
    assert path.read_text().splitlines() == ["step,name,value", "1,train_loss,0.9", "2,train_loss,0.8"]


def test_a_pruned_run_is_tagged_and_says_why_it_stopped_in_wandb(tmp_path, monkeypatch):
    """The real W&B client, offline: the tag and the summary key reach the run file."""
    from accelerate import PartialState
    from omegaconf import OmegaConf
    from wandb_log import read_run, records

    from experiments.config.schema import LoggerConfig
    from experiments.train.common import reset_accelerate_state

    PartialState(cpu=True)  # Accelerate's trackers log through its state, as inside a run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = OmegaConf.structured(LoggerConfig(trackers=["wandb"], project="p", group="study"))
    tracking = Tracking(build_trackers(cfg, tmp_path, "trial-3", ["model:minilm"]), {"trainer": {"lr": 0.01}})
    tracking.log({"eval_loss": 1.7}, step=2)
    tracking.mark_stopped({"reason": "pruned", "step": 2})
    tracking.finish()
    reset_accelerate_state()
    run_file = next((tmp_path / "wandb").glob("offline-run-*/*.wandb"))
    run = read_run(run_file)
    assert run["group"] == "study" and set(run["tags"]) == {"model:minilm", "pruned"}
    updates = [r["summary"].get("update", {}) for r in records(run_file) if r["type"] == "summary"]
    assert {"stopped": "pruned"} in updates, updates
