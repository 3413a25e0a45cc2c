"""train/nodes.py and the pieces of a multi-machine run that need no second machine: where a node of
rank > 0 writes, how configs that differ are found, how the launcher words a rendezvous that failed, and the
Slurm launcher's requeue decisions."""
from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.runs import flat_keys
from experiments.train import nodes

keys = st.sampled_from(["trainer.lr", "trainer.seed", "model.name", "dataset.max_train_samples", "tags"])
values = st.one_of(st.integers(-3, 3), st.floats(allow_nan=False, width=32), st.text(max_size=3), st.none())


@given(st.lists(st.dictionaries(keys, values, min_size=1), min_size=2, max_size=4))
def test_differences_are_exactly_the_keys_whose_values_differ(configs):
    found = nodes.differences(configs)
    for key in {k for c in configs for k in c}:
        differ = len({repr(c.get(key, "<missing>")) for c in configs}) > 1
        assert (key in found) == differ, (key, configs)
    assert found == sorted(found)


def test_the_machine_rank_is_the_one_key_nodes_may_differ_in():
    zero = flat_keys({"trainer": {"machine_rank": 0, "lr": 1e-4}})
    one = flat_keys({"trainer": {"machine_rank": 1, "lr": 1e-4}})
    assert nodes.differences([zero, one]) == []
    assert nodes.differences([zero, dict(one, **{"trainer.lr": 3e-4})]) == ["trainer.lr"]


def test_node_0_writes_in_the_run_dir_and_the_others_in_a_node_local_folder(tmp_path):
    run_dir = tmp_path / "run"
    assert nodes.config_dir(run_dir, 0) == run_dir
    one, two = nodes.config_dir(run_dir, 1), nodes.config_dir(run_dir, 2)
    assert one != two and not one.is_relative_to(run_dir) and "node1" in one.name
    assert nodes.node_dir(run_dir, 1) == nodes.node_dir(tmp_path / "." / "run", 1)  # the same run, resolved
    assert nodes.node_dir(tmp_path / "other", 1) != one


def test_a_second_node_keeps_hydra_out_of_the_run_dir(tmp_path):
    from experiments.rundir import node_settings

    settings = node_settings(tmp_path / "run", 1)
    assert settings["hydra.output_subdir"] is None
    log_file = Path(settings["hydra.job_logging.handlers.file.filename"])
    assert log_file.parent.is_dir() and not log_file.is_relative_to(tmp_path / "run")


def test_a_rendezvous_that_failed_names_the_key_the_address_and_the_machine():
    from experiments.train.launch import rendezvous_failed

    t = SimpleNamespace(num_processes=2, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1",
                        main_process_port=29500, rendezvous_timeout_s=60)
    line = rendezvous_failed(t, 61.2)
    assert "4 processes did not all join at 10.0.0.1:29500" in line
    assert "trainer.rendezvous_timeout_s=60" in line and "machine 1 of 2 waited 61 s" in line
    assert "trainer.main_process_ip" in line


def test_sigusr2_is_a_stop_signal_with_its_own_exit_code():
    from experiments.interrupts import STOP_SIGNALS, Interrupted, signal_name

    assert signal.SIGUSR2 in STOP_SIGNALS
    stopped = Interrupted.after_checkpoint(signal.SIGUSR2, 7, "/runs/x")
    assert stopped.exit_code == 128 + signal.SIGUSR2 and "SIGUSR2 (time limit ahead) at step 7" in str(stopped)
    assert signal_name(signal.SIGUSR2).startswith("SIGUSR2")


def test_a_restarted_slurm_job_resumes_only_from_a_whole_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason="hydra-submitit-launcher is an optional extra ([sweep])")
    from omegaconf import OmegaConf

    from hydra_plugins.experiments_launcher.slurm import resume_settings

    config = OmegaConf.create({"trainer": {"backend": "accelerate"}})
    run_dir = tmp_path / "0"
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert resume_settings(config, run_dir) == {}  # the first run
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resume_settings(config, run_dir) == {}  # restarted before any checkpoint: starts over
    step = run_dir / "checkpoints" / "step_2"
    step.mkdir(parents=True)
    (step / "model.safetensors").write_bytes(b"x" * 10)
    assert resume_settings(config, run_dir) == {}  # cut short: no loop_state.json
    (step / "loop_state.json").write_text('{"global_step": 2, "_files": {"model.safetensors": 10}}')
    assert resume_settings(config, run_dir) == {"trainer.resume": "true"}
    # TRL's trainers (tuning=dpo / grpo) checkpoint on the HF Trainer spine whatever trainer.backend says
    tuned, run_dir = OmegaConf.create({"trainer": {"backend": "accelerate"}, "tuning": {"name": "dpo"}}), tmp_path / "1"
    hf_step = run_dir / "checkpoints" / "checkpoint-2"
    hf_step.mkdir(parents=True)
    assert resume_settings(tuned, run_dir) == {}  # cut short: no trainer_state.json
    (hf_step / "trainer_state.json").write_text('{"global_step": 2}')
    assert resume_settings(tuned, run_dir) == {"trainer.resume": "true"}
