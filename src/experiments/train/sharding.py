"""Sharded training, ``trainer.distributed=fsdp``: FSDP2 through Accelerate's plugin.

Every process holds a 1/N shard of each weight, gradient and optimizer state; a transformer layer's full
weights are gathered only for its forward and backward and freed after (``reshard_after_forward``). What
the loop does differently under it (``loop.py``):

- ``best/`` and ``last/``: gathering the full weights is collective, so every process calls
  :func:`full_model`; the main process gets a plain (unsharded) copy and saves it as always (merged model
  + ``adapter/`` under LoRA), loadable with ``from_pretrained``;
- evaluation runs the task's inference-code metrics on every process (a forward pass on one process
  alone would wait for the other processes' shards forever);
- resumable checkpoints: Accelerate's ``save_state`` writes each process's shard with
  torch.distributed.checkpoint (``SHARDED_STATE_DICT``) and ``load_state`` reads them back.

On GPUs Accelerate turns the plugin into FSDP itself. For CPU processes (gloo) Accelerate 1.15 keeps
``MULTI_CPU`` and ignores the plugin, although torch's FSDP2 runs there: :func:`activate` then makes the
same switch Accelerate makes for GPUs, and stops with one line if the run is still not sharded.
"""
from __future__ import annotations

import logging
from typing import List

from accelerate.utils import FullyShardedDataParallelPlugin, is_torch_version
from accelerate.utils.constants import FSDP2_PYTORCH_VERSION

from experiments import adapters
from experiments.config.schema import TrainerConfig
from experiments.errors import ExperimentError

log = logging.getLogger(__name__)


def fsdp_plugin(trainer: TrainerConfig):
    """Accelerate's FSDP2 plugin for ``trainer.distributed=fsdp`` (None for ddp): one shard group per
    transformer layer (:func:`layer_classes`), resharded after each forward (least memory), checkpoints
    written as shards. When Accelerate hands it the model, it also refuses tied weights FSDP2 cannot place
    (:func:`check_tied_weights`) and, under mixed precision, runs the forward under autocast."""
    if trainer.distributed != "fsdp":
        return None
    if not is_torch_version(">=", FSDP2_PYTORCH_VERSION):
        raise ExperimentError(f"trainer.distributed=fsdp needs torch >= {FSDP2_PYTORCH_VERSION} (FSDP2); "
                              f"upgrade torch or use trainer.distributed=ddp")
    return ModelSharding(fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True,
                         state_dict_type="SHARDED_STATE_DICT")


class ModelSharding(FullyShardedDataParallelPlugin):
    """FSDP2 with the transformer layers as shard groups, checked and autocast as :func:`fsdp_plugin` says."""

    def set_auto_wrap_policy(self, model):
        """Accelerate calls this in prepare(), with the model, just before sharding it."""
        check_tied_weights(model)
        if self.transformer_cls_names_to_wrap is None:
            self.transformer_cls_names_to_wrap = layer_classes(model)
        if self.mixed_precision_policy is not None:
            _autocast_forward(model)
        super().set_auto_wrap_policy(model)


def _autocast_forward(model) -> None:
    """Run the model's forward under autocast, as Accelerate's prepare() does for DDP models (its FSDP2 path
    does not): with half-precision weights, LayerNorm, softmax and the loss then stay float32."""
    from types import MethodType

    from accelerate.utils import convert_outputs_to_fp32, get_mixed_precision_context_manager

    autocast = get_mixed_precision_context_manager(native_amp=True)
    model.forward = MethodType(convert_outputs_to_fp32(autocast(model.forward.__func__)), model)


def layer_classes(model) -> List[str]:
    """The model's transformer layer classes (its ``_no_split_modules``), less any that holds the input
    embeddings (BERT lists ``BertEmbeddings``): Accelerate gives the embedding table a shard group of its
    own, and a weight can be in one group only."""
    names = list(getattr(model, "_no_split_modules", None) or [])
    holders = _embedding_holders(model)
    layers = [name for name in names if name not in holders]
    if not layers:
        log.warning("%s names no transformer layer classes: FSDP shards it as one group (the whole model "
                    "is gathered at once)", type(model).__name__)
    return layers


def check_tied_weights(model) -> None:
    """Accelerate's FSDP2 sharding puts the input and output embeddings (a tied LM head) in one shard group;
    a weight shared by other modules (T5's encoder and decoder embeddings, BERT's masked-LM decoder bias)
    would be in two groups and fail at the first forward pass: one line before sharding instead."""
    embeddings = {_module_path(model, getter) for getter in ("get_input_embeddings", "get_output_embeddings")}
    owners: dict = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(param), []).append(name)
    for names in owners.values():
        if len(names) > 1 and any(name.rsplit(".", 1)[0] not in embeddings for name in names):
            raise ExperimentError(f"trainer.distributed=fsdp cannot shard this {model.config.model_type} model: "
                                  f"{' and '.join(names[:3])} are one shared weight, which Accelerate's FSDP2 "
                                  f"places in two shard groups; use trainer.distributed=ddp")


def _module_path(model, getter: str):
    """The dotted name of ``model.<getter>()`` (e.g. the input embeddings), or None."""
    try:
        module = getattr(model, getter)()
    except (AttributeError, NotImplementedError):
        return None
    return next((name for name, candidate in model.named_modules() if candidate is module), None)


def _embedding_holders(model) -> set:
    """Class names of the modules that contain the input embedding table (the model itself included)."""
    path = _module_path(model, "get_input_embeddings")
    if not path:
        return set()
    parts = path.split(".")
    return {type(model.get_submodule(".".join(parts[:i]))).__name__ for i in range(len(parts))}


def activate(accelerator, trainer: TrainerConfig) -> None:
    """Make sure a ``trainer.distributed=fsdp`` run is sharded: on CPU processes switch Accelerate to FSDP
    (see the module docstring); one line if it is still not sharded."""
    if trainer.distributed != "fsdp":
        return
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.MULTI_CPU:
        _shard_cpu_processes(accelerator.state, fsdp_plugin(trainer))
    if not accelerator.is_fsdp2:
        kind = str(accelerator.distributed_type).split(".")[-1]
        raise ExperimentError(f"trainer.distributed=fsdp: Accelerate set this run up as {kind}, not FSDP; "
                              f"use trainer.distributed=ddp")
    accelerator.state.fsdp_plugin.mixed_precision_policy = _precision_policy(accelerator.mixed_precision)


def _precision_policy(mixed_precision: str):
    """Weights gathered in the run's half precision for compute, gradients reduced in float32 (as DDP
    reduces its float32 gradients), outputs as computed (under autocast: the loss in float32). Accelerate's
    own policy reduces and returns half precision: a bf16 train loss is good to ~3 digits only."""
    if mixed_precision == "no":
        return None
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def _shard_cpu_processes(state, plugin) -> None:
    """What ``AcceleratorState`` does with an FSDP plugin on GPU processes, for gloo CPU processes."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState().distributed_type = DistributedType.FSDP  # Accelerate keeps the two in step


def is_sharded(accelerator) -> bool:
    """Is this run FSDP (weights spread over the processes: whole-model steps are collective)?"""
    return accelerator.is_fsdp2


def full_model(accelerator, model, auto_class: str, trust_remote_code: bool = False):
    """The trained model, whole: the unwrapped model without FSDP. Under FSDP every process must call this
    (gathering the shards is collective); the main process gets a plain copy, the others None."""
    if not is_sharded(accelerator):
        return accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)  # full tensors on the main process, {} elsewhere
    if not accelerator.is_main_process:
        return None
    return _plain_copy(accelerator.unwrap_model(model), state_dict, auto_class, trust_remote_code)


def _plain_copy(model, state_dict, auto_class: str, trust_remote_code: bool):
    """An unsharded model of ``model``'s architecture (its LoRA adapters too) holding ``state_dict``, in
    the dtype the weights were loaded in."""
    import copy

    import transformers

    wrapped = adapters.is_adapter(model)
    base = model.get_base_model() if wrapped else model
    plain = getattr(transformers, auto_class).from_config(base.config, dtype=getattr(base.config, "dtype", None),
                                                          trust_remote_code=trust_remote_code)
    if wrapped:
        from peft import get_peft_model

        plain = get_peft_model(plain, copy.deepcopy(model.peft_config["default"]))
    plain.load_state_dict(state_dict)
    return plain
