"""feature-extraction: last hidden states, per token (the pipeline's shape) or pooled per input."""
from __future__ import annotations

from typing import Any, Dict, List

from experiments.tasks.base import Task


def pool(token_vectors, mode: str, normalize: bool):
    """(tokens, hidden) tensor -> (hidden,) by mean or first token; optional L2 normalisation."""
    import torch

    vector = token_vectors.mean(dim=0) if mode == "mean" else token_vectors[0]
    return torch.nn.functional.normalize(vector, dim=-1) if normalize else vector


class FeatureExtraction(Task):
    name = "feature-extraction"
    pipeline_task = "feature-extraction"
    auto_class = "AutoModel"

    def token_counts(self, batch: List[str]) -> List[int]:
        tok = self.ctx.tokenizer
        return [len(ids) for ids in tok(batch, truncation=True, max_length=self.ctx.max_length)["input_ids"]]

    def hidden_pipeline(self, batch: List[str]) -> List[Any]:
        """Per-input (tokens, hidden) tensors from pipeline(); batch padding is cut off."""
        import torch

        out = self.get_pipeline()(batch, batch_size=len(batch), **self.pipeline_kwargs())
        left = self.ctx.tokenizer.padding_side == "left"
        return [torch.as_tensor(o)[0, -n:] if left else torch.as_tensor(o)[0, :n]
                for o, n in zip(out, self.token_counts(batch))]

    def hidden_manual(self, batch: List[str]) -> List[Any]:
        """Per-input (tokens, hidden) tensors: tokenizer -> model -> last_hidden_state without padding."""
        tok, model = self.ctx.tokenizer, self.ctx.model
        encoded = tok(batch, padding=True, truncation=True, max_length=self.ctx.max_length, return_tensors="pt")
        hidden = model(**encoded.to(self.ctx.device))[0].float().cpu()
        mask = encoded["attention_mask"].bool().cpu()
        return [hidden[i][mask[i]] for i in range(len(batch))]

    def pipeline_kwargs(self) -> Dict[str, Any]:
        return {"tokenize_kwargs": {"truncation": True, "max_length": self.ctx.max_length}, "return_tensors": True}

    def _shape(self, vectors: List[Any]) -> List[Any]:
        task = self.cfg
        if task.pooling == "none":
            return [[v.tolist()] for v in vectors]  # [1, tokens, hidden] like pipeline()
        return [pool(v.float(), task.pooling, task.normalize).tolist() for v in vectors]

    def pipeline(self, batch: List[Any]) -> List[Any]:
        return self._shape(self.hidden_pipeline(batch))

    def manual(self, batch: List[Any]) -> List[Any]:
        return self._shape(self.hidden_manual(batch))
