"""Faults in tracking, data reading and inference inputs: each stops with one line (exit 2) or does exactly
what was asked, and leaves nothing behind outside its own run directory.

W&B: a malformed key, or an unreachable server with ``wandb_mode=online``, stops before training (not after
wandb's ~90 s retry loop, never with a traceback); ``auto`` falls back to offline and says so. The key never
reaches a file. Data: a TSV / headerless file reads through ``dataset.read_options``; an unknown option name
is refused. Inputs: a value given empty (``inference.inputs=[]``, ``input_file=''``) is an error, not a
fallback to the dataset.
"""
from __future__ import annotations

import json
import secrets
import socket
import time
from collections import Counter

import pytest
from faults import TINY, assert_user_error, changed, run, snapshot

from experiments.config.schema import DatasetConfig, InferenceConfig, LoggerConfig
from experiments.errors import ExperimentError

COLA_READ = ["+dataset.read_options.sep='\\t'", "+dataset.read_options.quoting=3",
             "+dataset.read_options.header=null", "+dataset.read_options.column_names=[source,label,mark,sentence]"]


def _closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _valid_shaped_key() -> str:
    return "k" + secrets.token_hex(24)  # 49 characters: passes wandb's format check


def _files_containing(root, needle: str) -> list:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def _wandb_env(monkeypatch, key: str, url: str) -> dict:
    """``auto`` follows the key: the suite's WANDB_MODE=offline is removed for these runs."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")
    return {"WANDB_API_KEY": key, "WANDB_BASE_URL": url}


# --- W&B, in process (fast) ---------------------------------------------------------------------------------

def test_check_wandb_malformed_key_names_variable_not_key(monkeypatch):
    from experiments.tracking import check_wandb

    key = "abc123XYZmalformed"
    monkeypatch.setenv("WANDB_API_KEY", key)
    with pytest.raises(ExperimentError) as info:
        check_wandb(LoggerConfig(trackers=["wandb"], wandb_mode="online"))
    message = str(info.value)
    assert "WANDB_API_KEY" in message and "40 or more" in message and key not in message and "\n" not in message


def test_check_wandb_online_without_key_stops(monkeypatch, tmp_path):
    from experiments.tracking import check_wandb

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(ExperimentError, match="no W&B API key for api.wandb.ai.*WANDB_API_KEY.*wandb login"):
        check_wandb(LoggerConfig(trackers=["wandb"], wandb_mode="online"))


def test_check_wandb_bad_netrc_key_names_file_not_key(monkeypatch, tmp_path):
    from experiments.tracking import check_wandb

    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password shortkey99\n")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(ExperimentError) as info:
        check_wandb(LoggerConfig(trackers=["wandb"], wandb_mode="online"))
    assert str(netrc) in str(info.value) and "shortkey99" not in str(info.value)


def test_check_wandb_unreachable_online_stops_auto_goes_offline(monkeypatch, caplog):
    from experiments.tracking import check_wandb

    monkeypatch.setenv("WANDB_API_KEY", _valid_shaped_key())
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    start = time.monotonic()
    with pytest.raises(ExperimentError, match="logger.wandb_mode=online but the W&B server cannot be reached"):
        check_wandb(LoggerConfig(trackers=["wandb"], wandb_mode="online"))
    monkeypatch.setenv("WANDB_MODE", "online")  # asked for through the environment: also an error
    with pytest.raises(ExperimentError, match="WANDB_MODE=online but the W&B server cannot be reached"):
        check_wandb(LoggerConfig(trackers=["wandb"], wandb_mode="auto"))
    monkeypatch.delenv("WANDB_MODE")
    assert check_wandb(LoggerConfig(trackers=["wandb"], wandb_mode="auto")) == "offline"
    assert time.monotonic() - start < 10
    assert "OFFLINE" in caplog.text and "wandb sync" in caplog.text
    # the decision sticks: a second call (build_trackers after start-up) neither probes nor warns again
    caplog.clear()
    assert check_wandb(LoggerConfig(trackers=["wandb"], wandb_mode="auto")) == "offline"
    assert "OFFLINE" not in caplog.text
    assert check_wandb(LoggerConfig(trackers=["csv"])) is None


def test_wandb_start_failure_is_one_line_with_key_masked(monkeypatch):
    from wandb.errors import AuthenticationError

    from experiments.tracking import Tracking

    key = _valid_shaped_key()
    monkeypatch.setenv("WANDB_API_KEY", key)

    class Rejected:
        name = "wandb"

        def start(self):
            raise AuthenticationError(f"API key {key} rejected by the server\nmore detail")

    with pytest.raises(ExperimentError) as info:
        Tracking([Rejected()], {})
    assert "AuthenticationError" in str(info.value) and key not in str(info.value) and "\n" not in str(info.value)


# --- W&B, through the CLI -----------------------------------------------------------------------------------

def test_malformed_wandb_key_exits_2_and_key_reaches_no_file(tmp_path, monkeypatch):
    key = "abc123XYZmalformed"
    env = _wandb_env(monkeypatch, key, "https://api.wandb.ai")
    before = snapshot(tmp_path)
    result = run(*TINY, "logger=wandb", cwd=tmp_path, env=env)
    line = assert_user_error(result, "WANDB_API_KEY", "not a valid W&B API key")
    assert key not in line and key not in result.stdout + result.stderr
    assert changed(before, snapshot(tmp_path)) == {}
    assert _files_containing(tmp_path, key) == []


def test_unreachable_wandb_server_online_exits_2_fast(tmp_path, monkeypatch):
    port = _closed_port()
    env = _wandb_env(monkeypatch, _valid_shaped_key(), f"http://127.0.0.1:{port}")
    before = snapshot(tmp_path)
    start = time.monotonic()
    result = run(*TINY, "logger=wandb", "logger.wandb_mode=online", cwd=tmp_path, env=env, timeout=120)
    elapsed = time.monotonic() - start
    assert_user_error(result, "logger.wandb_mode=online", f"127.0.0.1:{port}", "cannot be reached")
    assert elapsed < 20, f"took {elapsed:.1f} s"
    assert changed(before, snapshot(tmp_path)) == {}


@pytest.mark.slow
def test_unreachable_wandb_server_auto_runs_offline_and_says_so(tmp_path, monkeypatch):
    key = _valid_shaped_key()
    env = _wandb_env(monkeypatch, key, f"http://127.0.0.1:{_closed_port()}")
    before = snapshot(tmp_path)
    result = run(*TINY, "logger=wandb", "hydra.run.dir=run", cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    warnings = [ln for ln in console.splitlines() if "W&B server unreachable" in ln]
    assert len(warnings) == 1 and "OFFLINE" in warnings[0] and "wandb sync" in warnings[0]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert changed(before, snapshot(tmp_path), allowed=["run"]) == {}
    assert _files_containing(tmp_path, key) == []


# --- dataset.read_options -----------------------------------------------------------------------------------

def _cola_cfg(shared_data, **options) -> DatasetConfig:
    read = {"sep": "\\t", "quoting": 3, "header": None, "column_names": ["source", "label", "mark", "sentence"]}
    return DatasetConfig(name="csv", loader="csv", text_column="sentence",
                         data_files={"train": str(shared_data / "glue" / "CoLA" / "dev.tsv")},
                         read_options={**read, **options})


def test_cola_dev_tsv_reads_through_read_options(shared_data):
    from experiments.data.sources import load_raw

    rows = load_raw(_cola_cfg(shared_data), mirror=None)["train"]
    assert len(rows) == 1043  # MANIFEST: 1,043 rows, 721 acceptable / 322 unacceptable, no header
    assert rows.column_names == ["source", "label", "mark", "sentence"]
    assert Counter(rows["label"]) == {1: 721, 0: 322}
    assert all(isinstance(s, str) and s for s in rows["sentence"])


def test_unknown_read_option_lists_allowed_ones(shared_data):
    from experiments.data.sources import load_raw

    with pytest.raises(ExperimentError) as info:
        load_raw(_cola_cfg(shared_data, seperator=","), mirror=None)
    message = str(info.value)
    assert "'seperator'" in message and "allowed: sep, delimiter, header" in message and "\n" not in message


def test_cola_dev_tsv_trains_tiny_through_dataset_csv(tmp_path, shared_data):
    cola = shared_data / "glue" / "CoLA"
    before = snapshot(tmp_path)
    result = run(*TINY, "dataset=csv", f"dataset.data_files.train={cola / 'train.part2.tsv'}",
                 f"dataset.data_files.validation={cola / 'dev.tsv'}", "dataset.text_column=sentence",
                 *COLA_READ, "hydra.run.dir=run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_train_samples"] == 16 and metrics["num_eval_samples"] == 16  # debug=tiny caps
    assert "eval_accuracy" in metrics["final"]
    assert "2 labels" in (tmp_path / "run" / "run.log").read_text()
    assert changed(before, snapshot(tmp_path), allowed=["run"]) == {}


def test_unknown_read_option_exits_2_with_one_line(tmp_path, shared_data):
    before = snapshot(tmp_path)
    result = run(*TINY, "dataset=csv", f"dataset.data_files.train={shared_data / 'glue' / 'CoLA' / 'dev.tsv'}",
                 "+dataset.read_options.seperator=x", cwd=tmp_path)
    assert_user_error(result, "dataset.read_options", "'seperator'", "allowed: sep,")
    assert changed(before, snapshot(tmp_path)) == {}


def test_read_options_on_a_loader_that_reads_files_itself_refused():
    from experiments.data.sources import load_raw

    cfg = DatasetConfig(name="cola", loader="glue_tsv", hub_id="nyu-mll/glue", hub_config="cola",
                        read_options={"sep": ","})
    with pytest.raises(ExperimentError, match="loader 'glue_tsv' reads its files itself"):
        load_raw(cfg, mirror=None)


def test_tab_escape_and_conflicting_options(shared_data):
    from experiments.data.sources import read_options

    assert read_options(_cola_cfg(shared_data), "csv")["sep"] == "\t"
    with pytest.raises(ExperimentError, match="same option"):
        read_options(_cola_cfg(shared_data, delimiter=";"), "csv")


# --- inference inputs: given empty is not "not given" -------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    (dict(inputs=[]), "inference.inputs is empty: give at least one input"),
    (dict(input_file=""), "inference.input_file is empty"),
    (dict(input_file="  "), "inference.input_file is empty"),
    (dict(split=""), "inference.split is empty"),
    (dict(text_column=""), "inference.text_column is empty"),
    (dict(inputs=["a"], input_file="x.txt"), "both given"),
    (dict(inputs=["a"], split="validation"), "inference.split=validation selects a dataset split"),
])
def test_inference_sources_given_empty_or_twice_refused(settings, message):
    from experiments.infer.inputs import check_sources

    with pytest.raises(ExperimentError, match=message):
        check_sources(InferenceConfig(**settings))


def test_inference_sources_not_given_is_fine():
    from experiments.infer.inputs import check_sources

    check_sources(InferenceConfig())
    check_sources(InferenceConfig(inputs=["a"]))
    check_sources(InferenceConfig(input_file="x.txt"))


@pytest.mark.parametrize("override, message", [
    ("inference.inputs=[]", "inference.inputs is empty: give at least one input"),
    ("inference.input_file=''", "inference.input_file is empty"),
])
def test_empty_inference_input_exits_2_instead_of_the_train_split(tmp_path, override, message):
    before = snapshot(tmp_path)
    result = run(*TINY, "mode=infer", override, cwd=tmp_path)
    assert_user_error(result, message)
    assert changed(before, snapshot(tmp_path)) == {}
