"""fill-mask: the top-k tokens for each mask position, with the filled-in sequence."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Dict, List

from experiments.data.lm import mlm_blocks, premask
from experiments.data.prepare import select_text_splits
from experiments.errors import DataError, ExperimentError
from experiments.tasks.base import Task, TokenLossTraining, TrainingData, short

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from experiments.config.schema import ExperimentConfig, TaskConfig

MASK_PLACEHOLDERS = re.compile(r"\[MASK\]|<mask>")


class FillMask(TokenLossTraining, Task):
    name = "fill-mask"
    pipeline_task = "fill-mask"
    auto_class = "AutoModelForMaskedLM"
    head = "masked-LM"

    def check_model(self, model, tokenizer, task_cfg: TaskConfig) -> None:
        if tokenizer.mask_token is None:
            raise ExperimentError("fill-mask needs a tokenizer with a mask token; this one has none")

    def check_input(self, value: Any) -> Any:
        value = super().check_input(value)
        if not MASK_PLACEHOLDERS.search(value):
            raise DataError(f"fill-mask input has no mask token ([MASK] or <mask>): {short(value)}")
        return value

    def adapt_input(self, value: Any) -> Any:
        return MASK_PLACEHOLDERS.sub(self.ctx.tokenizer.mask_token, value)

    @property
    def top_k(self) -> int:
        return int(self.cfg.top_k or 5)

    def pipeline_kwargs(self) -> Dict[str, Any]:
        return {"top_k": self.top_k, "tokenizer_kwargs": {"truncation": True, "max_length": self.ctx.max_length}}

    def pipeline(self, batch: List[Any]) -> List[Any]:
        out = super().pipeline(batch)
        return [out] if len(batch) == 1 else out  # the pipeline unwraps one-item lists

    def manual(self, batch: List[Any]) -> List[Any]:
        tok, model = self.ctx.tokenizer, self.ctx.model
        encoded = tok(batch, padding=True, truncation=True, max_length=self.ctx.max_length, return_tensors="pt")
        logits = model(**encoded.to(self.ctx.device)).logits
        input_ids = encoded["input_ids"].cpu()
        outputs = []
        for row in range(len(batch)):
            ids = input_ids[row]
            positions = (ids == tok.mask_token_id).nonzero().squeeze(-1)
            if positions.numel() == 0:
                raise DataError(f"fill-mask input lost its mask token to truncation: {short(batch[row])}")
            probs = logits[row, positions, :].float().softmax(dim=-1).cpu()
            values, predictions = probs.topk(self.top_k)
            single = positions.numel() == 1
            per_mask = []
            for i in range(positions.numel()):
                fillers = []
                for score, token in zip(values[i].tolist(), predictions[i].tolist()):
                    filled = ids.clone()
                    filled[positions[i]] = token
                    filled = filled[filled != tok.pad_token_id]
                    fillers.append({"score": score, "token": token, "token_str": tok.decode([token]),
                                    "sequence": tok.decode(filled, skip_special_tokens=single)})
                per_mask.append(fillers)
            outputs.append(per_mask[0] if single else per_mask)
        return outputs

    # --- training ------------------------------------------------------------------------------------
    mlm_probability = 0.15

    def setup_training(self, model_config: PreTrainedConfig, cfg: ExperimentConfig) -> None:
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        if model_config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or model_config.is_encoder_decoder:
            raise ExperimentError(f"task=fill-mask trains a masked-LM encoder (BERT-like); {cfg.model.name_or_path} "
                                  f"is a '{model_config.model_type}' model")
        super().setup_training(model_config, cfg)

    def training_data(self, raw, tokenizer, cfg: ExperimentConfig) -> TrainingData:
        """Text cut into blocks of max_length tokens; the eval blocks are masked once, with the run's seed, so
        every evaluation scores the same masks (``eval_perplexity``)."""
        if tokenizer.mask_token is None:
            raise ExperimentError("task=fill-mask needs a tokenizer with a mask token; this one has none")
        data_cfg = cfg.dataset
        train, evaluation = select_text_splits(raw, data_cfg, [data_cfg.text_column])
        block = int(cfg.task.max_length or cfg.tokenizer.max_length)
        train_blocks, eval_blocks = [mlm_blocks(split, tokenizer, text_column=data_cfg.text_column, block_size=block,
                                                num_proc=data_cfg.num_proc, desc=f"text blocks {data_cfg.name} {name}")
                                     for name, split in (("train", train), ("eval", evaluation))]
        eval_blocks = premask(eval_blocks, tokenizer, mlm_probability=self.mlm_probability, seed=cfg.trainer.seed)
        return TrainingData(train_blocks, eval_blocks)

    def collator(self, tokenizer, cfg: ExperimentConfig):
        """BERT's 80/10/10 masking of 15 % of tokens, drawn from torch's RNG (which checkpoints carry)."""
        from transformers import DataCollatorForLanguageModeling

        return DataCollatorForLanguageModeling(tokenizer, mlm_probability=self.mlm_probability,
                                               pad_to_multiple_of=cfg.collator.pad_to_multiple_of)

    def eval_collator(self, tokenizer, cfg: ExperimentConfig):
        from transformers import default_data_collator

        return default_data_collator
