"""Load tokenizers and models from a resolved local directory; save them so plain Auto classes reload them."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

from experiments import hardware
from experiments.config.schema import ExperimentConfig, ModelConfig, TokenizerConfig
from experiments.errors import ExperimentError
from experiments.resolve import Resolved, resolve_model

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedConfig

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
    tok_cfg.max_length = fit_max_length("tokenizer.max_length", tok_cfg.max_length, tokenizer, model_dir)
    return tokenizer


_NO_LIMIT = 10 ** 9  # transformers' tokenizers say 1e30 when the checkpoint names no limit
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def token_limit(tokenizer, model_dir: Path) -> Optional[int]:
    """The most tokens the model takes: the tokenizer's ``model_max_length`` and the config's positions."""
    import json

    limits = [tokenizer.model_max_length] if 0 < (tokenizer.model_max_length or 0) < _NO_LIMIT else []
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    config = {**config.get("text_config", {}), **config} if isinstance(config, dict) else {}
    limits += [config[k] for k in _POSITION_KEYS if isinstance(config.get(k), int) and config[k] > 0][:1]
    return min(limits) if limits else None


def config_positions(model_config: PreTrainedConfig) -> Optional[int]:
    """The positions a loaded model config has (its ``max_position_embeddings`` or the like), None if it names none."""
    model_config = getattr(model_config, "text_config", None) or model_config
    values = [getattr(model_config, key, None) for key in _POSITION_KEYS]
    return next((v for v in values if isinstance(v, int) and v > 0), None)


def fit_max_length(key: str, value: int, tokenizer, model_dir: Path) -> int:
    """A length the model cannot take (more tokens than it has positions) is clamped to its limit, said once;
    the tokenizer then knows the limit too (``model_max_length``), for checks of untruncated rows."""
    limit = token_limit(tokenizer, model_dir)
    if limit is not None and not 0 < (tokenizer.model_max_length or 0) <= limit:
        tokenizer.model_max_length = limit
    special = tokenizer.num_special_tokens_to_add(pair=False)
    if value <= special:  # the tokenizer cannot truncate below its own special tokens: rows would stay whole
        raise ExperimentError(f"{key}={value} leaves no room for text: the tokenizer adds {special} special tokens "
                              f"to every row; use at least {special + 1}")
    if limit is None or value <= limit:
        return value
    log.warning("%s=%d is more than the model takes (%d tokens): using %d", key, value, limit, limit)
    return limit


def load_config(model_dir: Path, model_cfg: ModelConfig):
    """The checkpoint's config (from config.json, or the GGUF file's metadata)."""
    from transformers import AutoConfig

    kwargs = {"gguf_file": model_cfg.gguf_file} if model_cfg.gguf_file else {}
    try:
        return AutoConfig.from_pretrained(str(model_dir), trust_remote_code=model_cfg.trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ExperimentError(f"cannot read the model config in {model_dir}: {str(exc).splitlines()[0][:200]}") \
            from None


def training_attention(cfg: ExperimentConfig) -> str:
    """The attention implementation a fine-tune loads its model with (``model.attn_implementation``)."""
    half = hardware.mixed_precision(cfg.trainer.mixed_precision) in hardware.HALF_PRECISIONS
    return hardware.attn_implementation(cfg.model.attn_implementation, hardware.training_device_type(), half=half,
                                        training=True)


def load_sequence_classifier(model_dir: Path, model_cfg: ModelConfig, *, num_labels: int,
                             id2label: Dict[int, str], is_regression: bool, pad_token_id: Optional[int] = None,
                             attn_implementation: Optional[str] = None):
    """AutoModelForSequenceClassification with the dataset's labels (a new head if the checkpoint has none);
    returns (model, names of the weights the checkpoint lacked)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(
        str(model_dir), **({"gguf_file": model_cfg.gguf_file} if model_cfg.gguf_file else {}),
        num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
        problem_type="regression" if is_regression else "single_label_classification",
        trust_remote_code=model_cfg.trust_remote_code, **dict(model_cfg.config_overrides),
    )
    if getattr(config, "pad_token_id", None) is None and pad_token_id is not None:
        config.pad_token_id = pad_token_id
    return load_for_training(model_dir, model_cfg, "AutoModelForSequenceClassification", "sequence-classification",
                             {"config": config, "ignore_mismatched_sizes": True}, attn_implementation)


def load_for_training(model_dir: Path, model_cfg: ModelConfig, auto_class: str, head: str,
                      config_kwargs: Optional[Dict] = None, attn_implementation: Optional[str] = None):
    """``auto_class.from_pretrained`` for fine-tuning (safetensors or the configured GGUF file); returns
    (model, names of the weights the checkpoint lacked).

    Head weights the checkpoint lacks are initialised at random (said in the log); with
    ``model.allow_new_head=false`` that stops the run instead, naming the missing weights."""
    import transformers

    cls = getattr(transformers, auto_class)
    kwargs = dict(dtype=torch_dtype(model_cfg.dtype), trust_remote_code=model_cfg.trust_remote_code,
                  output_loading_info=True, **(config_kwargs or {}))
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if "config" not in kwargs:  # config attributes set on load (e.g. {hidden_dropout_prob: 0.0})
        kwargs.update(dict(model_cfg.config_overrides))
    if model_cfg.gguf_file:
        kwargs["gguf_file"] = model_cfg.gguf_file
    else:
        kwargs["use_safetensors"] = True
    try:
        model, info = cls.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ExperimentError(f"cannot load a {head} model ({auto_class}) from {model_dir}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        if not model_cfg.allow_new_head:
            raise ExperimentError(f"{model_cfg.name_or_path} has no trained {head} head ({len(missing)} weights "
                                  f"missing, e.g. {missing[0]}) and model.allow_new_head=false; choose a "
                                  f"checkpoint with that head or set model.allow_new_head=true")
        log.info("new %s head (randomly initialised): %s", head, ", ".join(missing[:4]))
    if model_cfg.gguf_file:
        _detach_gguf(model)
    return model, missing


def _detach_gguf(model) -> None:
    """A GGUF checkpoint is dequantized to ordinary float weights on load; transformers still marks the
    model as "quantized with gguf" and refuses to save it. Drop that mark so the fine-tuned model saves as
    safetensors that plain ``from_pretrained(dir)`` loads."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]


def save_pretrained(model, tokenizer, directory: Path) -> None:
    """safetensors weights + config + tokenizer: reloadable with ``AutoModelFor….from_pretrained(directory)``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))


def separates_flattened(model) -> bool:
    """Whether ``model`` keeps examples apart in a padding-free row (position ids restarting per example, no
    attention mask): the logits of two short examples flattened into one row must equal their logits run
    one by one. transformers builds such per-example masks for many decoder-only models (Llama, GPT-2, ...)
    but not all (OPT, BLOOM), so this is asked of the model itself, once, before training."""
    import torch

    vocab = int(model.get_input_embeddings().num_embeddings)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(3, vocab, (1, n), generator=generator).to(device) for n in (3, 4))
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3]], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            flat = model(input_ids=torch.cat([first, second], dim=1), position_ids=positions, use_cache=False).logits
            apart = torch.cat([model(input_ids=x, use_cache=False).logits for x in (first, second)], dim=1)
    finally:
        model.train(was_training)
    return bool(torch.allclose(flat.float(), apart.float(), atol=1e-3, rtol=1e-3))
