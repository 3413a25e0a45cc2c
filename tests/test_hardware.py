"""The machine-dependent speed decisions (experiments.hardware): each ``auto`` resolves by what the device runs
fast, explicit values pass through, impossible asks stop in one line."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import hardware
from experiments.errors import ExperimentError

TEST_TABLE = {
    "margin": 0.05,
    "conservative": {"mixed_precision": "no", "attention_half_training": "sdpa", "attention": "sdpa",
                     "inference_dtype": "float32", "compile": False, "padding_free": False},
    "classes": {
        "cpu-amx": {"measured": {"mixed_precision": {"choice": "bf16"}, "attention_half_training": {"choice": "eager"},
                                 "inference_dtype": {"choice": "bfloat16"}}},
        "cpu-avx512-bf16": {"measured": {"inference_dtype": {"choice": "bfloat16"}}},
        "cuda-sm90": {"measured": {"mixed_precision": {"choice": "bf16"}, "compile": {"choice": True},
                                   "padding_free": {"choice": True},
                                   "attention_half_training": {"choice": "flash_attention_2"}}},
        "cuda-sm75": {"measured": {"mixed_precision": {"choice": "fp16"}, "inference_dtype": {"choice": "float16"}}},
    },
}


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(hardware, "load_table", lambda path=None: TEST_TABLE)
    return TEST_TABLE


@pytest.fixture
def cpu(monkeypatch, table):
    """A CPU-only machine of the kind the test chooses, deciding from TEST_TABLE."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def of_kind(kind: str):
        monkeypatch.setattr(hardware, "cpu_class", lambda: kind)

    return of_kind


@pytest.fixture
def gpu(monkeypatch, table):
    """A GPU of the compute capability the test chooses, deciding from TEST_TABLE."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def with_capability(major: int, minor: int):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (major, minor))

    return with_capability


@pytest.mark.parametrize("kind, expected", [("cpu-amx", "bf16"), ("cpu-avx512-bf16", "no"), ("cpu-avx2", "no")])
def test_mixed_precision_auto_on_cpu_is_the_measured_choice_else_fp32(cpu, kind, expected):
    cpu(kind)
    assert hardware.mixed_precision("auto") == expected
    assert hardware.mixed_precision("no") == "no" and hardware.mixed_precision("bf16") == "bf16"


def test_mixed_precision_fp16_without_a_gpu_is_one_line(cpu):
    cpu("cpu-amx")
    with pytest.raises(ExperimentError, match="needs a GPU"):
        hardware.mixed_precision("fp16")


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((7, 5), "fp16"), ((8, 0), "no")])
def test_mixed_precision_auto_on_gpu_is_measured_per_class(gpu, capability, expected):
    gpu(*capability)
    assert hardware.mixed_precision("auto") == expected


@pytest.mark.parametrize("kind, expected", [("cpu-amx", "bfloat16"), ("cpu-avx512-bf16", "bfloat16"),
                                            ("cpu-avx2", "float32"), ("cpu-other", "float32")])
def test_inference_dtype_auto_on_cpu(cpu, kind, expected):
    cpu(kind)
    assert hardware.inference_dtype("auto", torch.device("cpu")) == expected
    assert hardware.inference_dtype("float32", torch.device("cpu")) == "float32"


@pytest.mark.parametrize("capability, expected", [((7, 5), "float16"), ((9, 0), "float32")])
def test_inference_dtype_auto_on_gpu(gpu, capability, expected):
    gpu(*capability)
    assert hardware.inference_dtype("auto", torch.device("cuda")) == expected


def test_attention_auto(monkeypatch, gpu):
    gpu(9, 0)
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: True)
    assert hardware.attn_implementation("auto", "cuda", half=True, training=True) == "flash_attention_2"
    assert hardware.attn_implementation("auto", "cuda", half=False, training=True) == "sdpa"
    monkeypatch.setattr(hardware, "cpu_class", lambda: "cpu-amx")
    assert hardware.attn_implementation("auto", "cpu", half=True, training=True) == "eager"
    assert hardware.attn_implementation("auto", "cpu", half=True, training=False) == "sdpa"
    assert hardware.attn_implementation("auto", "cpu", half=False, training=True) == "sdpa"
    assert hardware.attn_implementation("sdpa", "cpu", half=True, training=True) == "sdpa"
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: False)  # measured, but not installed
    assert hardware.attn_implementation("auto", "cuda", half=True, training=True) == "sdpa"
    monkeypatch.setattr(hardware, "cpu_class", lambda: "cpu-avx512-bf16")  # not measured there: transformers' default
    assert hardware.attn_implementation("auto", "cpu", half=True, training=True) == "sdpa"


def test_flash_attention_asked_for_where_it_cannot_run_is_one_line(monkeypatch):
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: False)
    with pytest.raises(ExperimentError, match="needs a CUDA GPU and the flash-attn package"):
        hardware.attn_implementation("flash_attention_2", "cuda", half=True, training=True)
    monkeypatch.setattr(hardware, "flash_attention_installed", lambda: True)
    with pytest.raises(ExperimentError, match="model.attn_implementation=flash_attention_2"):
        hardware.attn_implementation("flash_attention_2", "cpu", half=True, training=True)
    assert hardware.attn_implementation("flash_attention_2", "cuda", half=True, training=True) == "flash_attention_2"


def test_compile_auto_is_where_measured_faster(gpu):
    gpu(9, 0)
    assert hardware.use_compile("auto", "cuda") and not hardware.use_compile("auto", "cpu")
    assert hardware.use_compile("true", "cpu") and not hardware.use_compile("false", "cuda")
    gpu(8, 6)
    assert not hardware.use_compile("auto", "cuda")


def test_padding_free_auto_is_where_measured_under_our_loop_and_true_needs_it(gpu):
    gpu(9, 0)
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


# --- the table: any kind of hardware, any decision ---------------------------------------------------------------

KINDS = ("cpu-amx", "cpu-avx512-bf16", "cpu-avx2", "cpu-other", "cuda-sm80", "cuda-sm90", "cuda-sm75")
VALUES = {"mixed_precision": ["bf16", "no"], "attention_half_training": ["eager", "sdpa"],
          "attention": ["eager", "sdpa"], "inference_dtype": ["bfloat16", "float32"], "compile": [True, False],
          "padding_free": [True, False]}
measured_tables = st.dictionaries(
    st.sampled_from(KINDS),
    st.dictionaries(st.sampled_from(hardware.DECISIONS), st.integers(0, 1), max_size=len(hardware.DECISIONS)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(measured=measured_tables, kind=st.sampled_from(KINDS + ("cpu-unknown", "cuda-sm120")),
       decision=st.sampled_from(hardware.DECISIONS))
def test_any_decision_is_the_measured_choice_else_the_conservative_one(monkeypatch, measured, kind, decision):
    conservative = {name: values[-1] for name, values in VALUES.items()}
    table = {"conservative": conservative,
             "classes": {k: {"measured": {d: {"choice": VALUES[d][i], "machine": "m", "date": "d", "command": "c",
                                              "figures": "f"} for d, i in entries.items()}}
                         for k, entries in measured.items()}}
    monkeypatch.setattr(hardware, "load_table", lambda path=None: table)
    monkeypatch.setattr(hardware, "hardware_class", lambda device_type: kind)
    choice = hardware.table_choice(decision, "cpu")
    if decision in measured.get(kind, {}):
        assert choice == hardware.Choice(VALUES[decision][measured[kind][decision]], "measured")
    else:
        assert choice == hardware.Choice(conservative[decision], "assumed")
    assert hardware.basis(decision, "auto", "cpu") == choice.basis
    assert hardware.basis(decision, choice.value if decision != "compile" else "true", "cpu") == "configured"


def test_the_shipped_table_names_machine_date_command_and_figures_of_every_choice():
    table = hardware.load_table()
    assert set(table["conservative"]) == set(hardware.DECISIONS)
    assert 0 < table["margin"] < 1
    for kind, entry in table["classes"].items():
        assert kind.startswith(("cpu-", "cuda-sm")) and entry["describes"]
        for decision, measurement in (entry.get("measured") or {}).items():
            assert decision in hardware.DECISIONS, (kind, decision)
            assert {"choice", "machine", "date", "command", "figures"} <= set(measurement), (kind, decision)
            assert all(str(measurement[key]).strip() for key in ("machine", "date", "command", "figures"))


@pytest.mark.parametrize("flags, cap, expected", [
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "", "cpu-amx"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16", "cpu-avx512-bf16"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "avx2", "cpu-avx2"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "ALL", "cpu-amx"),
    ({"avx2", "avx512f", "avx512_bf16"}, "", "cpu-avx512-bf16"),
    ({"avx2", "avx512f"}, "", "cpu-avx2"),
    ({"avx2"}, "AVX", "cpu-other"),
    (set(), "", "cpu-other"),
])
def test_cpu_class_from_flags_and_onednn_isa_cap(flags, cap, expected):
    assert hardware.cpu_class(flags, cap) == expected


def test_a_run_records_where_each_speed_choice_came_from(cpu):
    cpu("cpu-amx")
    recorded = hardware.training_basis("auto", "auto", "false", "auto")
    assert recorded == {"hardware": "cpu-amx",
                        "basis": {"mixed_precision": "measured", "attn_implementation": "measured",
                                  "compile": "configured", "padding_free": "assumed"}}
    cpu("cpu-avx2")
    assert hardware.training_basis("auto", "eager", "auto")["basis"] == {
        "mixed_precision": "assumed", "attn_implementation": "configured", "compile": "assumed"}
