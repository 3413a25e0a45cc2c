"""The machine-dependent speed decisions (experiments.hardware): each ``auto`` resolves by what the device runs
fast, explicit values pass through, impossible asks stop in one line."""
from __future__ import annotations

import pytest
import torch

from experiments import hardware
from experiments.errors import ExperimentError


@pytest.fixture
def cpu(monkeypatch):
    """A CPU-only machine whose bf16 speed the test chooses."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def with_bf16(fast: bool):
        monkeypatch.setattr(hardware, "cpu_runs_bf16_fast", lambda: fast)

    return with_bf16


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def with_bf16(supported: bool):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)

    return with_bf16


@pytest.mark.parametrize("fast, expected", [(True, "bf16"), (False, "no")])
def test_mixed_precision_auto_on_cpu_follows_bf16_speed(cpu, fast, expected):
    cpu(fast)
    assert hardware.mixed_precision("auto") == expected
    assert hardware.mixed_precision("no") == "no" and hardware.mixed_precision("bf16") == "bf16"


def test_mixed_precision_fp16_without_a_gpu_is_one_line(cpu):
    cpu(True)
    with pytest.raises(ExperimentError, match="needs a GPU"):
        hardware.mixed_precision("fp16")


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp16")])
def test_mixed_precision_auto_on_gpu(gpu, supported, expected):
    gpu(supported)
    assert hardware.mixed_precision("auto") == expected


@pytest.mark.parametrize("fast, expected", [(True, "bfloat16"), (False, "float32")])
def test_inference_dtype_auto_on_cpu(cpu, fast, expected):
    cpu(fast)
    assert hardware.inference_dtype("auto", torch.device("cpu")) == expected
    assert hardware.inference_dtype("float32", torch.device("cpu")) == "float32"


@pytest.mark.parametrize("supported, expected", [(True, "bfloat16"), (False, "float16")])
def test_inference_dtype_auto_on_gpu(gpu, supported, expected):
    gpu(supported)
    assert hardware.inference_dtype("auto", torch.device("cuda")) == expected


def test_attention_auto(monkeypatch):
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: True)
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: True)
    assert hardware.attn_implementation("auto", "cuda", half=True, training=True) == "flash_attention_2"
    assert hardware.attn_implementation("auto", "cuda", half=False, training=True) == "sdpa"
    assert hardware.attn_implementation("auto", "cpu", half=True, training=True) == "eager"
    assert hardware.attn_implementation("auto", "cpu", half=True, training=False) == "sdpa"
    assert hardware.attn_implementation("auto", "cpu", half=False, training=True) == "sdpa"
    assert hardware.attn_implementation("sdpa", "cpu", half=True, training=True) == "sdpa"
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: False)
    assert hardware.attn_implementation("auto", "cuda", half=True, training=True) == "sdpa"
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: False)  # not measured faster there: transformers' default
    assert hardware.attn_implementation("auto", "cpu", half=True, training=True) == "sdpa"


def test_flash_attention_asked_for_where_it_cannot_run_is_one_line(monkeypatch):
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: False)
    with pytest.raises(ExperimentError, match="needs a CUDA GPU and the flash-attn package"):
        hardware.attn_implementation("flash_attention_2", "cuda", half=True, training=True)
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: True)
    with pytest.raises(ExperimentError, match="model.attn_implementation=flash_attention_2"):
        hardware.attn_implementation("flash_attention_2", "cpu", half=True, training=True)
    assert hardware.attn_implementation("flash_attention_2", "cuda", half=True, training=True) == "flash_attention_2"


def test_compile_auto_is_cuda_only():
    assert hardware.use_compile("auto", "cuda") and not hardware.use_compile("auto", "cpu")
    assert hardware.use_compile("true", "cpu") and not hardware.use_compile("false", "cuda")


def test_padding_free_auto_is_cuda_under_our_loop_and_true_needs_it():
    assert hardware.padding_free("auto", "cuda", "accelerate")
    assert not hardware.padding_free("auto", "cpu", "accelerate")
    assert not hardware.padding_free("auto", "cuda", "hf_trainer")
    assert hardware.padding_free("true", "cpu", "accelerate")
    with pytest.raises(ExperimentError, match="collator.padding_free=true needs trainer=accelerate"):
        hardware.padding_free("true", "cuda", "hf_trainer")


def test_adamw_is_fused_where_torch_has_it_for_the_device():
    params = [torch.nn.Parameter(torch.zeros(2, 2))]
    options = hardware.adamw_options(params)
    assert options == {"fused": True}  # torch >= 2.4 has a fused CPU AdamW
    torch.optim.AdamW(params, lr=1e-3, **options).step()  # and it runs
    assert hardware.adamw_options([torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)]) \
        == {"foreach": True}


def test_speed_settings_leave_out_unset_values():
    assert hardware.speed_settings(a=1, b=None, c=False) == {"a": 1, "c": False}


def test_device_name_names_the_cpu():
    assert "cores" in hardware.device_name("cpu")
