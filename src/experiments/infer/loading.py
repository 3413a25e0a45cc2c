"""Load the model and tokenizer a task needs, and refuse checkpoints that lack the task's head."""
from __future__ import annotations

import logging
from typing import Any, Dict, Tuple

from experiments import adapters, hardware
from experiments.config.schema import ExperimentConfig
from experiments.errors import ExperimentError
from experiments.modeling import fit_max_length, load_tokenizer, resolve, torch_dtype
from experiments.tasks.base import Task

log = logging.getLogger(__name__)


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ExperimentError(f"inference.device={name} but no CUDA device is available")
    return torch.device(name)


def speed_choices(task: Task, cfg: ExperimentConfig, device) -> Dict[str, Any]:
    """The dtype, attention implementation and compile decision of ``mode=infer`` on ``device``."""
    dtype = hardware.inference_dtype(cfg.inference.dtype, device)
    attention = hardware.attn_implementation(cfg.model.attn_implementation, device.type,
                                             half=dtype in ("bfloat16", "float16"), training=False)
    # generate() runs one shape per new token: compiling its forward recompiles, so generation stays eager
    compiled = hardware.use_compile(cfg.inference.compile, device.type) and not task.generates
    recorded = hardware.speed_basis(
        device.type, dtype=("inference_dtype", cfg.inference.dtype),
        attn_implementation=(hardware.attention_decision(dtype in ("bfloat16", "float16"), training=False),
                             cfg.model.attn_implementation),
        compile=("compile", cfg.inference.compile))
    return {"dtype": dtype, "attn_implementation": attention, "compile": compiled, **recorded}


def load_model(task: Task, cfg: ExperimentConfig, device) -> Tuple[Any, Any, str, Dict[str, Any]]:
    """(model in eval mode on ``device``, tokenizer, "<origin>:<dir>" it came from, its speed choices) for
    ``task``; one-line errors for unusable checkpoints."""
    import transformers
    from transformers import AutoConfig

    resolved = resolve(cfg.model, cfg.paths.mirror)
    adapter = adapters.saved_adapter(resolved.path) if resolved.path is not None else None
    # A LoRA adapter folder (peft.merge=false, or <run>/best/adapter): load its base model, then the adapter.
    model_cfg = adapters.base_model_config(cfg.model, adapter) if adapter else cfg.model
    weights = resolve(model_cfg, cfg.paths.mirror) if adapter else resolved
    extra = {"gguf_file": model_cfg.gguf_file} if model_cfg.gguf_file else {}
    where = f"model '{model_cfg.name_or_path}'"
    try:
        # an adapter folder holds the trained task model's config (its labels, its head); the base has the weights
        config_dir = resolved.path if adapter else weights.path
        config = AutoConfig.from_pretrained(str(config_dir), trust_remote_code=model_cfg.trust_remote_code,
                                            **({} if adapter else extra), **dict(model_cfg.config_overrides))
    except (OSError, ValueError) as exc:
        raise ExperimentError(f"cannot read the config of {where}: {str(exc).splitlines()[0][:200]}") from None
    auto_name = task.choose_auto_class(config, cfg.task)
    auto = getattr(transformers, auto_name)
    speed = speed_choices(task, cfg, device)
    try:
        model, info = auto.from_pretrained(
            str(weights.path), config=config, dtype=torch_dtype(speed["dtype"]),
            attn_implementation=speed["attn_implementation"],
            trust_remote_code=model_cfg.trust_remote_code, output_loading_info=True,
            **({} if model_cfg.gguf_file else {"use_safetensors": True}), **extra)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise ExperimentError(f"{where} ({config.model_type}) has no {task.head} head for task {task.name} "
                                  f"({auto_name} does not support it)") from None
        raise ExperimentError(f"cannot load {where}: {str(exc).splitlines()[0][:200]}") from None
    except OSError as exc:
        raise ExperimentError(f"cannot load {where}: {str(exc).splitlines()[0][:200]}") from None
    # A base encoder loaded from a checkpoint with a head lacks only the (unused) pooler.
    missing = [k for k in info.get("missing_keys", []) if "pooler" not in k]
    if adapter:
        model = adapters.load_adapter(model, resolved.path)  # brings the trained head too (modules_to_save)
        log.info("LoRA adapter %s on base %s (%s)", resolved.path, model_cfg.name_or_path, weights.origin)
    elif missing:
        arch = ", ".join(config.architectures or [config.model_type])
        raise ExperimentError(f"{where} ({arch}) has no {task.head} head for task {task.name}: "
                              f"{len(missing)} weights missing (e.g. {missing[0]}); use a checkpoint trained for it")
    tokenizer = load_tokenizer(resolved.path, cfg.tokenizer, cfg.model, cfg.paths.mirror)
    if cfg.task.max_length:
        cfg.task.max_length = fit_max_length("task.max_length", cfg.task.max_length, tokenizer, resolved.path)
    # Pipelines truncate at model_max_length: make it the configured limit so both paths read the same tokens.
    limit = int(cfg.task.max_length or cfg.tokenizer.max_length)
    if not tokenizer.model_max_length or tokenizer.model_max_length > limit:
        tokenizer.model_max_length = limit
    task.prepare_tokenizer(tokenizer, model)
    task.check_model(model, tokenizer, cfg.task)
    model.eval()
    model.to(device)
    if speed["compile"]:
        model.compile(dynamic=True)  # in place: pipelines still see the model's own class
    log.info("loaded %s as %s (%s) on %s: %s", model_cfg.name_or_path, type(model).__name__, resolved.origin, device,
             ", ".join(f"{k}={v}" for k, v in speed.items()))
    return model, tokenizer, f"{resolved.origin}:{resolved.path}", speed
