"""The run record: one schema for metrics.json, written and read in one place, the same for both backends."""
from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli

from experiments.record import SCHEMA_VERSION, RunRecord, read_record, to_payload, write_record


def test_round_trip_keeps_fields_environment_and_details(tmp_path):
    record = RunRecord(mode="infer", model="m", final={"accuracy": 0.5}, environment={"device": "cpu"},
                       task="fill-mask", details={"path": "manual", "tokens": 12})
    payload = write_record(tmp_path, record)
    assert json.loads((tmp_path / "metrics.json").read_text()) == payload
    assert payload["device"] == "cpu" and payload["task"] == "fill-mask" and payload["path"] == "manual"
    assert payload["schema_version"] == SCHEMA_VERSION
    again = read_record(tmp_path)
    assert again == record and to_payload(again) == payload


def test_missing_or_broken_file_reads_as_none(tmp_path):
    assert read_record(tmp_path) is None
    (tmp_path / "metrics.json").write_text("{not json")
    assert read_record(tmp_path) is None


@pytest.mark.slow
def test_both_training_backends_write_the_same_schema(tmp_path):
    keys = {}
    for backend in ("accelerate", "hf_trainer"):
        result = run_cli("debug=tiny", "logger=csv", f"trainer={backend}", f"hydra.run.dir={tmp_path}/{backend}")
        assert result.returncode == 0, result.stderr[-2000:]
        record = read_record(tmp_path / backend)
        assert record.mode == "train" and record.backend == backend and record.finished
        assert record.distributed_type and record.model_source.startswith("package:")
        keys[backend] = (set(to_payload(record)), set(record.final))
    assert keys["accelerate"][0] == keys["hf_trainer"][0]
    shared = {"eval_loss", "eval_accuracy", "train_loss", "train_runtime_s", "train_samples_per_second",
              "global_step", "epochs"}
    assert shared <= keys["accelerate"][1] and shared <= keys["hf_trainer"][1]
