"""fill-mask: the top-k tokens for each mask position, with the filled-in sequence."""
from __future__ import annotations

import re
from typing import Any, Dict, List

from experiments.errors import DataError, ExperimentError
from experiments.tasks.base import Task, short

MASK_PLACEHOLDERS = re.compile(r"\[MASK\]|<mask>")


class FillMask(Task):
    name = "fill-mask"
    pipeline_task = "fill-mask"
    auto_class = "AutoModelForMaskedLM"
    head = "masked-LM"

    def check_model(self, model, tokenizer, task_cfg) -> None:
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
