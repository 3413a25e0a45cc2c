"""The speed decisions that depend on the machine, each made here and nowhere else.

Every ``auto`` setting that trades nothing in results for speed resolves in this module, from a table of
measurements per kind of hardware (``hardware_table.yaml`` beside this file: the machine, the date, the command
and the figures of each choice). A kind of hardware (:func:`hardware_class`: ``cpu-amx``, ``cpu-avx512-bf16``,
``cpu-avx2``, ``cpu-other``, ``cuda-sm<major><minor>``) takes the conservative choice for every decision it has
no measurement for, and a run records which ones were measured (``speed.basis`` in metrics.json):

* :func:`mixed_precision`  ``trainer.mixed_precision``: the measured winner (bf16 autocast on AMX CPUs), else fp32.
* :func:`inference_dtype`  ``inference.dtype``: the weights' dtype in ``mode=infer``.
* :func:`attn_implementation`  ``model.attn_implementation``: eager or SDPA as measured (eager for bf16 training on
  AMX, where SDPA's backward pass is the slow part), flash-attention where measured and installed, else SDPA.
* :func:`use_compile`  ``trainer.compile`` / ``inference.compile``: ``torch.compile`` where it measured faster.
* :func:`padding_free`  ``collator.padding_free``: flattened causal-LM batches (no padding) where measured faster.
* :func:`adamw_options`  fused AdamW where torch has it for the parameters' device, else the foreach one.

:func:`speed_settings` is what a run records of these choices in ``metrics.json``, :func:`basis` where each
came from. ``scripts/bench_train.py --sections choices --record`` measures a new kind of hardware into the table.
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from experiments.errors import ExperimentError

HALF_PRECISIONS = ("bf16", "fp16")
TABLE_PATH = Path(__file__).with_name("hardware_table.yaml")
DECISIONS = ("mixed_precision", "attention_half_training", "attention", "inference_dtype", "compile",
             "padding_free")
# oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA) below AMX / below AVX512-BF16: the CPU then runs as the lower class.
_CAPS_WITHOUT_AMX = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                     "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16")
_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class Choice:
    """One decision's value on this hardware and where it came from: ``measured`` (the table has a measurement for
    this kind of hardware) or ``assumed`` (it has none: the conservative value)."""

    value: Any
    basis: str


@functools.lru_cache(maxsize=4)
def load_table(path: Path = TABLE_PATH) -> Dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        line = ""
    return frozenset(line.partition(":")[2].split())


def cpu_class(flags: Optional[Iterable[str]] = None, isa_cap: Optional[str] = None) -> str:
    """The CPU's kind for the table: ``cpu-amx``, ``cpu-avx512-bf16``, ``cpu-avx2`` or ``cpu-other``. oneDNN's ISA
    cap (``ONEDNN_MAX_CPU_ISA``, which bf16 matmuls obey) lowers it: a capped CPU runs as the lower kind."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA", "") if isa_cap is None else isa_cap).upper()
    if "amx_bf16" in flags and cap not in _CAPS_WITHOUT_AMX:
        return "cpu-amx"
    if "avx512_bf16" in flags and cap not in _CAPS_WITHOUT_BF16:
        return "cpu-avx512-bf16"
    if "avx2" in flags and cap not in ("SSE41", "AVX"):
        return "cpu-avx2"
    return "cpu-other"


def hardware_class(device_type: str) -> str:
    """The kind of hardware ``device_type`` runs on: the CPU's kind, or ``cuda-sm<major><minor>`` for a GPU."""
    if device_type == "cuda" and cuda_available():
        import torch

        major, minor = torch.cuda.get_device_capability()
        return f"cuda-sm{major}{minor}"
    return cpu_class()


def table_choice(decision: str, device_type: str) -> Choice:
    """``decision``'s value on ``device_type``'s kind of hardware: the table's measured one, else conservative."""
    table = load_table()
    kind = table.get("classes", {}).get(hardware_class(device_type)) or {}
    entry = (kind.get("measured") or {}).get(decision)
    if entry:
        return Choice(entry["choice"], "measured")
    return Choice(table["conservative"][decision], "assumed")


def basis(decision: str, setting: Any, device_type: str) -> str:
    """Where a run's value for ``decision`` came from: ``configured`` (the config named it), else the table's
    ``measured`` or ``assumed``."""
    return table_choice(decision, device_type).basis if str(setting) == "auto" else "configured"


def check_cpu_counts(counts: Dict[str, Optional[int]]) -> None:
    """Data-loading workers, threads or CPU processes (``{key: value}``) beyond this machine's cores stop in
    one line naming the key: each starts an OS process or thread, so a huge value would swamp the machine."""
    import os

    cores = os.cpu_count() or 1
    for key, value in counts.items():
        if value and value > cores:
            raise ExperimentError(f"{key}={value} is more than this machine's {cores} CPU cores: use at most {cores}")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def training_device_type() -> str:
    """Where a fine-tune runs: Accelerate puts it on the GPU whenever one is visible."""
    return "cuda" if cuda_available() else "cpu"


def mixed_precision(value: str) -> str:
    """``trainer.mixed_precision``: ``auto`` is the table's measured winner for this kind of hardware (bf16
    autocast on AMX CPUs), else full precision (``no``). Other values pass through."""
    if value == "fp16" and not cuda_available():
        raise ExperimentError("trainer.mixed_precision=fp16 needs a GPU; use bf16 or auto on CPU")
    if value != "auto":
        return value
    return table_choice("mixed_precision", training_device_type()).value


def inference_dtype(value: str, device) -> str:
    """``inference.dtype``: ``auto`` is the table's measured weights dtype for this kind of hardware (bfloat16 on
    AMX and AVX512-BF16 CPUs), else float32. Explicit values pass through."""
    if value != "auto":
        return value
    return table_choice("inference_dtype", getattr(device, "type", str(device))).value


def flash_attention_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def attention_decision(half: bool, training: bool) -> str:
    """The table's decision for attention: half-precision training has its own (SDPA's CPU backward is slow)."""
    return "attention_half_training" if half and training else "attention"


def attn_implementation(value: str, device_type: str, half: bool, training: bool) -> str:
    """``model.attn_implementation``: ``auto`` is the table's measured winner for this kind of hardware and regime
    (eager attention for bf16 training on an AMX CPU, where PyTorch's CPU SDPA backward costs more than the AMX
    matmuls of eager attention: MiniLM steps 0.53 s vs 0.72 s), else SDPA, transformers' own default; a measured
    flash-attention falls back to SDPA where the package is missing. Explicit values pass through,
    flash-attention only where it can run."""
    if value.startswith("flash_attention"):
        if device_type != "cuda" or (value == "flash_attention_2" and not flash_attention_installed()):
            raise ExperimentError(f"model.attn_implementation={value} needs a CUDA GPU and the flash-attn package "
                                  f"(pip install flash-attn); use model.attn_implementation=auto or sdpa")
    if value != "auto":
        return value
    chosen = table_choice(attention_decision(half, training), device_type).value
    if str(chosen).startswith("flash_attention") and not (device_type == "cuda" and flash_attention_installed()):
        return "sdpa"
    return chosen


def use_compile(value: str, device_type: str) -> bool:
    """``trainer.compile`` / ``inference.compile``: ``auto`` compiles where the table measured it faster."""
    if value == "auto":
        return bool(table_choice("compile", device_type).value)
    return value == "true"


def padding_free(value: str, device_type: str, backend: str) -> bool:
    """``collator.padding_free``: ``auto`` flattens batches under our loop where the table measured it faster;
    ``true`` anywhere transformers builds the per-sequence masks from position ids."""
    if value == "true" and backend != "accelerate":
        raise ExperimentError("collator.padding_free=true needs trainer=accelerate (the Trainer backend would "
                              "pass the batch's example count to the model); use collator.padding_free=false")
    if value == "auto":
        return backend == "accelerate" and bool(table_choice("padding_free", device_type).value)
    return value == "true"


def fused_adamw_runs_on(device_types: Iterable[str]) -> bool:
    """Whether this torch has a fused AdamW kernel for every one of ``device_types`` (and any at all)."""
    import torch
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    device_types = set(device_types)
    return ("fused" in inspect.signature(torch.optim.AdamW).parameters and bool(device_types)
            and device_types <= set(_get_fused_kernels_supported_devices()))


def adamw_options(params: Iterable[Any]) -> Dict[str, bool]:
    """``{"fused": True}`` where this torch has a fused AdamW for every parameter's device, else
    ``{"foreach": True}`` (one kernel per group of tensors instead of one per tensor)."""
    params = list(params)
    floating = all(p.is_floating_point() for p in params)
    return {"fused": True} if floating and fused_adamw_runs_on(p.device.type for p in params) else {"foreach": True}


def device_name(device_type: str) -> str:
    """The GPU model, or the CPU model and core count (what a benchmark figure was measured on)."""
    import os

    import torch

    if device_type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        model = ""
    return f"{model or 'CPU'} ({os.cpu_count()} cores)"


def speed_basis(device_type: str, **settings: Tuple[str, Any]) -> Dict[str, Any]:
    """The kind of hardware and, per recorded key, where its value came from (:func:`basis`); ``settings`` maps a
    record key to (the table's decision, the config's setting for it)."""
    return {"hardware": hardware_class(device_type),
            "basis": {key: basis(decision, setting, device_type) for key, (decision, setting) in settings.items()}}


def training_basis(precision_setting: str, attention_setting: str, compile_setting: str,
                   padding_free_setting: Optional[str] = None) -> Dict[str, Any]:
    """:func:`speed_basis` of a fine-tune's decisions, given the config's settings for them."""
    half = mixed_precision(precision_setting) in HALF_PRECISIONS
    settings = {"mixed_precision": ("mixed_precision", precision_setting),
                "attn_implementation": (attention_decision(half, training=True), attention_setting),
                "compile": ("compile", compile_setting)}
    if padding_free_setting is not None:
        settings["padding_free"] = ("padding_free", padding_free_setting)
    return speed_basis(training_device_type(), **settings)


def speed_settings(**resolved: Optional[Any]) -> Dict[str, Any]:
    """What a run records of its speed choices (``details.speed`` in metrics.json), unset ones left out."""
    return {key: value for key, value in resolved.items() if value is not None}
