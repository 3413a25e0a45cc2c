"""Parameter-efficient fine-tuning (``peft=lora``) with the peft library: wrap, count, save.

The wrapped model trains like any other under Accelerate (DDP, mixed precision, checkpoints: Accelerate
saves its full state dict, so a resumed run continues exactly). What a run writes per saved model:

- ``peft.merge=true`` (default): ``<dir>/`` holds the merged model (plain ``AutoModelFor….from_pretrained``
  loads it) and ``<dir>/adapter/`` the adapter (``adapter_config.json`` + ``adapter_model.safetensors``);
- ``peft.merge=false``: ``<dir>/`` holds the adapter only.

Next to every adapter, ``base_model.json`` records the base model's config section, so ``mode=infer``
resolves the base exactly as training did (mirror / package / GGUF / hub) before applying the adapter, and
``config.json`` is the trained task model's config (labels, head).
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from experiments.config.schema import ModelConfig, PeftConfig
from experiments.errors import ExperimentError
from experiments.modeling import save_pretrained

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
BASE_MODEL_FILE = "base_model.json"
BASE_MODEL_KEYS = ("name_or_path", "revision", "package", "gguf_file")  # what loads the base as training did

# The peft task type of each Auto class (it decides which new head peft keeps trainable and saves).
TASK_TYPES = {
    "AutoModelForSequenceClassification": "SEQ_CLS",
    "AutoModelForQuestionAnswering": "QUESTION_ANS",
    "AutoModelForCausalLM": "CAUSAL_LM",
    "AutoModelForSeq2SeqLM": "SEQ_2_SEQ_LM",
    "AutoModelForMaskedLM": None,  # peft has no masked-LM type: the plain PeftModel (heads tied to embeddings)
}


def wrap(model, peft_cfg: PeftConfig, auto_class: str, new_weights: Sequence[str] = ()):
    """The model with LoRA adapters (``peft.name=lora``), or unchanged (``none``). A head the checkpoint
    lacked (``new_weights``) trains in full: random weights behind frozen ones would learn nothing."""
    if peft_cfg.name == "none":
        return model
    from peft import LoraConfig, get_peft_model

    target = peft_cfg.target_modules
    if target is not None and not isinstance(target, str):
        target = list(target)
    to_save = list(peft_cfg.modules_to_save) if peft_cfg.modules_to_save is not None else head_modules(new_weights)
    lora = LoraConfig(r=peft_cfg.r, lora_alpha=peft_cfg.alpha, lora_dropout=peft_cfg.dropout, target_modules=target,
                      modules_to_save=to_save or None, task_type=TASK_TYPES.get(auto_class))
    try:
        wrapped = get_peft_model(model, lora)
    except ValueError as exc:  # e.g. no default target modules for this architecture, or a name not found
        raise ExperimentError(f"peft=lora cannot wrap this {model.config.model_type} model: "
                              f"{str(exc).splitlines()[0][:200]} (set peft.target_modules, e.g. "
                              f"'[q_proj,v_proj]' or all-linear)") from None
    counts = parameter_counts(wrapped)
    log.info("LoRA r=%d on %s: %s of %s parameters train (%.2f%%)", peft_cfg.r, sorted(wrapped.peft_config["default"]
             .target_modules), f"{counts['trainable_params']:,}", f"{counts['total_params']:,}",
             100 * counts["trainable_params"] / max(1, counts["total_params"]))
    return wrapped


def head_modules(new_weights: Sequence[str]) -> List[str]:
    """The outermost modules holding newly initialised weights (``cls.predictions.bias`` and
    ``cls.predictions.transform.dense.weight`` -> ``cls.predictions``)."""
    owners = sorted({name.rsplit(".", 1)[0] for name in new_weights if "." in name})
    return [m for m in owners if not any(m.startswith(other + ".") for other in owners if other != m)]


def parameter_counts(model) -> Dict[str, int]:
    """Trainable and total parameters (what the log and metrics.json report)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": int(trainable), "total_params": int(total)}


def is_adapter(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save(model, tokenizer, directory: Path, peft_cfg: PeftConfig, base: ModelConfig) -> None:
    """safetensors weights + config + tokenizer; for an adapter model see the module docstring."""
    if not is_adapter(model):
        save_pretrained(model, tokenizer, directory)
        return
    adapter_dir = directory / ADAPTER_DIR if peft_cfg.merge else directory
    save_pretrained(model, tokenizer, adapter_dir)
    model.get_base_model().config.save_pretrained(str(adapter_dir))  # the task model's labels and head
    (adapter_dir / BASE_MODEL_FILE).write_text(json.dumps(_base_record(base), indent=2) + "\n", encoding="utf-8")
    if peft_cfg.merge:
        # merge_and_unload changes the model it is given: merge a copy, so training goes on unchanged.
        merged = copy.deepcopy(model).merge_and_unload()
        save_pretrained(merged, tokenizer, directory)
        del merged


def _base_record(base: ModelConfig) -> Dict[str, Any]:
    return {key: getattr(base, key) for key in BASE_MODEL_KEYS}


def saved_adapter(directory: Path) -> Optional[Dict[str, Any]]:
    """The base model record of an adapter folder written by :func:`save`, or None if it holds none."""
    record = Path(directory) / BASE_MODEL_FILE
    if not (Path(directory) / "adapter_config.json").exists():
        return None
    if not record.exists():
        raise ExperimentError(f"{directory} holds a peft adapter without {BASE_MODEL_FILE}; load it with "
                              f"model.name_or_path=<its base model> and peft's PeftModel.from_pretrained")
    return json.loads(record.read_text(encoding="utf-8"))


def base_model_config(model_cfg: ModelConfig, record: Dict[str, Any]) -> ModelConfig:
    """The config section that loads an adapter's base model as training did."""
    import dataclasses

    fields = {key: record.get(key) for key in BASE_MODEL_KEYS}
    return dataclasses.replace(model_cfg, **{**fields, "revision": fields["revision"] or "main"})


def load_adapter(base_model, directory: Path):
    """``PeftModel.from_pretrained`` on an already-loaded base model (inference; adapters stay separate)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(directory), is_trainable=False)
