"""Load tokenizers and models from a resolved local directory; save them so plain Auto classes reload them."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

from experiments.config.schema import ModelConfig, TokenizerConfig
from experiments.errors import ExperimentError
from experiments.resolve import Resolved, resolve_model

log = logging.getLogger(__name__)


def resolve(model_cfg: ModelConfig, mirror: Optional[str]) -> Resolved:
    resolved = resolve_model(model_cfg.name_or_path, mirror=mirror, package=model_cfg.package,
                             revision=model_cfg.revision, gguf_file=model_cfg.gguf_file)
    log.info("model %s from %s (%s)", model_cfg.name_or_path, resolved.path, resolved.origin)
    return resolved


def torch_dtype(name: str):
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def load_tokenizer(model_dir: Path, tok_cfg: TokenizerConfig, model_cfg: ModelConfig, mirror: Optional[str] = None):
    from transformers import AutoTokenizer

    source = model_dir
    if tok_cfg.name_or_path:
        source = resolve_model(tok_cfg.name_or_path, mirror=mirror).path
    kwargs = {"gguf_file": model_cfg.gguf_file} if model_cfg.gguf_file and source == model_dir else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), use_fast=tok_cfg.use_fast,
                                                  trust_remote_code=model_cfg.trust_remote_code, **kwargs)
    except (OSError, ValueError) as exc:
        raise ExperimentError(f"cannot load a tokenizer from {source}: {str(exc).splitlines()[0][:200]}") from None
    tokenizer.padding_side = tok_cfg.padding_side
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_sequence_classifier(model_dir: Path, model_cfg: ModelConfig, *, num_labels: int,
                             id2label: Dict[int, str], is_regression: bool, pad_token_id: Optional[int] = None):
    """AutoModelForSequenceClassification with the dataset's labels (a new head if the checkpoint has none)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(
        str(model_dir), num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
        problem_type="regression" if is_regression else "single_label_classification",
        trust_remote_code=model_cfg.trust_remote_code, **dict(model_cfg.config_overrides),
    )
    if getattr(config, "pad_token_id", None) is None and pad_token_id is not None:
        config.pad_token_id = pad_token_id
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), config=config, dtype=torch_dtype(model_cfg.dtype), use_safetensors=True,
            trust_remote_code=model_cfg.trust_remote_code, ignore_mismatched_sizes=True,
            **({"gguf_file": model_cfg.gguf_file} if model_cfg.gguf_file else {}),
        )
    except (OSError, ValueError) as exc:
        raise ExperimentError(f"cannot load a model from {model_dir}: {str(exc).splitlines()[0][:200]}") from None


def save_pretrained(model, tokenizer, directory: Path) -> None:
    """safetensors weights + config + tokenizer: reloadable with ``AutoModelFor….from_pretrained(directory)``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
