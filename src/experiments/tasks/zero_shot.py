"""zero-shot-classification: NLI entailment scores (pipeline's method) or sentence-embedding similarity."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from experiments.errors import ExperimentError
from experiments.tasks.base import Task
from experiments.tasks.features import FeatureExtraction, pool
from experiments.tasks.labels import classification_quality, label_name_rows

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from experiments.config.schema import TaskConfig


def entailment_id(model_config: PreTrainedConfig) -> int:
    """Index of the label whose name starts with 'entail' (-1 when none), as the pipeline finds it."""
    for label, index in model_config.label2id.items():
        if str(label).lower().startswith("entail"):
            return int(index)
    return -1


class ZeroShotClassification(Task):
    name = "zero-shot-classification"
    pipeline_task = "zero-shot-classification"
    head = "sequence-classification (NLI)"

    label_names: Optional[List[str]] = None

    def choose_auto_class(self, model_config: PreTrainedConfig, task_cfg: TaskConfig) -> str:
        if task_cfg.method not in (None, "nli", "embedding"):
            raise ExperimentError(f"task.method={task_cfg.method} is not a zero-shot method (nli or embedding)")
        return "AutoModel" if task_cfg.method == "embedding" else "AutoModelForSequenceClassification"

    def check_model(self, model, tokenizer, task_cfg: TaskConfig) -> None:
        if task_cfg.method == "embedding":
            return
        if entailment_id(model.config) < 0:
            labels = ", ".join(str(v) for v in model.config.id2label.values())
            raise ExperimentError(
                f"zero-shot-classification needs an NLI model with an 'entailment' label; this model's labels are "
                f"[{labels}] (fine-tune one: experiment=rte_minilm, or use task.method=embedding with a sentence encoder)")

    def pipeline_name(self) -> Optional[str]:
        return "feature-extraction" if self.cfg.method == "embedding" else self.pipeline_task

    @property
    def labels(self) -> List[str]:
        """task.candidate_labels, else the dataset's label names."""
        labels = list(self.cfg.candidate_labels) or list(self.label_names or [])
        if not labels:
            raise ExperimentError("zero-shot-classification needs task.candidate_labels=[a,b,...] "
                                  "(or a dataset with label names)")
        return labels

    def _result(self, sequence: str, scores: List[float]) -> Dict[str, Any]:
        order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
        return {"sequence": sequence, "labels": [self.labels[i] for i in order], "scores": [scores[i] for i in order]}

    # --- NLI ----------------------------------------------------------------------------------------
    def token_costs(self, values: List[Any]) -> List[int]:
        """NLI runs one (text, hypothesis) pair per candidate label."""
        costs = super().token_costs(values)
        return costs if self.cfg.method == "embedding" else [c * len(self.labels) for c in costs]

    def _nli_scores(self, logits) -> List[List[float]]:
        """(sequences, labels, classes) logits -> per-label scores, as the pipeline computes them."""
        import torch

        ent = entailment_id(self.ctx.model.config)
        if self.cfg.multi_label or logits.shape[1] == 1:
            contradiction = -1 if ent == 0 else 0
            pair = logits[..., [contradiction, ent]]
            return torch.softmax(pair, dim=-1)[..., 1].tolist()
        return torch.softmax(logits[..., ent], dim=-1).tolist()

    def pipeline(self, batch: List[Any]) -> List[Any]:
        if self.cfg.method == "embedding":
            features = FeatureExtraction(self.cfg, self.ctx)
            features._pipe = self.get_pipeline()
            return self._embedding(batch, features.hidden_pipeline)
        out = self.get_pipeline()(batch, batch_size=len(batch) * len(self.labels), **self.pipeline_kwargs())
        return [out] if isinstance(out, dict) else out

    def pipeline_kwargs(self) -> Dict[str, Any]:
        if self.cfg.method == "embedding":
            return FeatureExtraction(self.cfg, self.ctx).pipeline_kwargs()
        return {"candidate_labels": self.labels, "hypothesis_template": self.cfg.hypothesis_template,
                "multi_label": self.cfg.multi_label}

    def manual(self, batch: List[Any]) -> List[Any]:
        if self.cfg.method == "embedding":
            return self._embedding(batch, FeatureExtraction(self.cfg, self.ctx).hidden_manual)
        tok, model = self.ctx.tokenizer, self.ctx.model
        labels, template = self.labels, self.cfg.hypothesis_template
        premises = [text for text in batch for _ in labels]
        hypotheses = [template.format(label) for _ in batch for label in labels]
        encoded = tok(premises, hypotheses, padding=True, truncation="only_first", max_length=self.ctx.max_length,
                      return_tensors="pt").to(self.ctx.device)
        logits = model(**encoded).logits.float().cpu().reshape(len(batch), len(labels), -1)
        return [self._result(text, scores) for text, scores in zip(batch, self._nli_scores(logits))]

    # --- embedding similarity -------------------------------------------------------------------------
    def _embedding(self, batch: List[str], hidden) -> List[Any]:
        import torch

        hypotheses = [self.cfg.hypothesis_template.format(label) for label in self.labels]
        key = f"label_vectors/{hidden.__name__}"  # label embeddings are computed once per path
        if key not in self.ctx.extra:
            self.ctx.extra[key] = torch.stack([pool(v, "mean", True) for v in hidden(hypotheses)])
        texts = torch.stack([pool(v, "mean", True) for v in hidden(batch)])
        similarity = texts @ self.ctx.extra[key].T
        return [self._result(text, row) for text, row in zip(batch, similarity.tolist())]

    def quality(self, outputs: List[Any], references: List[Any]) -> Dict[str, float]:
        return classification_quality([o["labels"][0] for o in outputs], references, self.label_names)

    def example_rows(self, items, outputs):
        return label_name_rows(self.scored(items, outputs), lambda output: output["labels"][0], self.label_names)
