"""The speed decisions that depend on the machine, each made here and nowhere else.

Every ``auto`` setting that trades nothing in results for speed resolves in this module, from what the
hardware runs fast (measured on the machines this project runs on; figures in docs/speed.md):

* :func:`mixed_precision`  ``trainer.mixed_precision``: bf16 autocast where bf16 is fast, fp16 on GPUs without bf16.
* :func:`inference_dtype`  ``inference.dtype``: the weights' dtype in ``mode=infer`` (bf16 where it is fast).
* :func:`attn_implementation`  ``model.attn_implementation``: flash-attention where installed on a GPU, else
  SDPA; eager attention for bf16 training on an AMX CPU, where SDPA's backward pass is the slow part.
* :func:`use_compile`  ``trainer.compile`` / ``inference.compile``: ``torch.compile`` on CUDA only (on CPU it
  did not pay for the models measured).
* :func:`padding_free`  ``collator.padding_free``: flattened causal-LM batches (no padding) on CUDA.
* :func:`adamw_options`  fused AdamW where torch has it for the parameters' device, else the foreach one.

:func:`speed_settings` is what a run records of these choices in ``metrics.json``.
"""
from __future__ import annotations

import importlib.util
import inspect
from typing import Any, Dict, Iterable, Optional

from experiments.errors import ExperimentError

HALF_PRECISIONS = ("bf16", "fp16")


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


def cpu_runs_bf16_fast() -> bool:
    """AVX512-BF16 or AMX: oneDNN runs bf16 matmuls natively (else bf16 is emulated and slower than fp32)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mixed_precision(value: str) -> str:
    """``trainer.mixed_precision``: ``auto`` is bf16 where the hardware runs it fast (GPUs with bf16, CPUs with
    AVX512-BF16 or AMX), fp16 on older GPUs, else full precision (``no``). Other values pass through."""
    import torch

    if value == "fp16" and not torch.cuda.is_available():
        raise ExperimentError("trainer.mixed_precision=fp16 needs a GPU; use bf16 or auto on CPU")
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_runs_bf16_fast() else "no"


def inference_dtype(value: str, device) -> str:
    """``inference.dtype``: ``auto`` is bfloat16 on a GPU with bf16 or a CPU that runs it fast, float16 on other
    GPUs, else float32. Explicit values pass through."""
    import torch

    if value != "auto":
        return value
    if getattr(device, "type", str(device)) == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_runs_bf16_fast() else "float32"


def cpu_has_amx() -> bool:
    """Intel AMX (bf16 tile matmuls): the CPUs where eager attention measured faster than SDPA for training."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and " amx_bf16" in line for line in cpuinfo)
    except OSError:
        return False


def flash_attention_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def attn_implementation(value: str, device_type: str, half: bool, training: bool) -> str:
    """``model.attn_implementation``: ``auto`` is flash-attention 2 on a GPU in half precision when the
    ``flash_attn`` package is installed; eager attention for bf16 training on an AMX CPU (there PyTorch's CPU
    SDPA backward costs more than the AMX matmuls of eager attention: MiniLM steps 0.53 s vs 0.72 s); else SDPA,
    transformers' own default. Explicit values pass through, flash-attention only where it can run."""
    if value.startswith("flash_attention"):
        if device_type != "cuda" or (value == "flash_attention_2" and not flash_attention_installed()):
            raise ExperimentError(f"model.attn_implementation={value} needs a CUDA GPU and the flash-attn package "
                                  f"(pip install flash-attn); use model.attn_implementation=auto or sdpa")
    if value != "auto":
        return value
    if device_type == "cuda":
        return "flash_attention_2" if half and flash_attention_installed() else "sdpa"
    return "eager" if half and training and cpu_has_amx() else "sdpa"


def use_compile(value: str, device_type: str) -> bool:
    """``trainer.compile`` / ``inference.compile``: ``auto`` compiles on CUDA only."""
    if value == "auto":
        return device_type == "cuda"
    return value == "true"


def padding_free(value: str, device_type: str, backend: str) -> bool:
    """``collator.padding_free``: ``auto`` flattens batches on CUDA under our loop (where padding costs the
    most); ``true`` anywhere transformers builds the per-sequence masks from position ids."""
    if value == "true" and backend != "accelerate":
        raise ExperimentError("collator.padding_free=true needs trainer=accelerate (the Trainer backend would "
                              "pass the batch's example count to the model); use collator.padding_free=false")
    if value == "auto":
        return device_type == "cuda" and backend == "accelerate"
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


def speed_settings(**resolved: Optional[Any]) -> Dict[str, Any]:
    """What a run records of its speed choices (``details.speed`` in metrics.json), unset ones left out."""
    return {key: value for key, value in resolved.items() if value is not None}
