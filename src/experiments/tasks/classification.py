"""text-classification (alias sentiment-analysis): softmax over the logits, label from id2label."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from experiments import metrics
from experiments.data.prepare import build_classification_data, build_collator
from experiments.errors import DataError
from experiments.metrics.examples import ExampleRecords, eval_set_name, label_metrics, label_rows
from experiments.modeling import load_sequence_classifier, training_attention
from experiments.tasks.base import Task, TrainingTask, short, text_field
from experiments.tasks.labels import classification_quality, label_name_rows

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from experiments.config.schema import ExperimentConfig


def scores_function(model_config: PreTrainedConfig) -> str:
    """What the pipeline applies to the logits: none (regression), sigmoid, or softmax."""
    if model_config.problem_type == "regression":
        return "none"
    if model_config.problem_type == "multi_label_classification" or model_config.num_labels == 1:
        return "sigmoid"
    return "softmax"


class TextClassification(TrainingTask, Task):
    name = "text-classification"
    hf_trainer = True
    pipeline_task = "text-classification"
    auto_class = "AutoModelForSequenceClassification"
    head = "sequence-classification"

    label_names: Optional[List[str]] = None  # the dataset's names for reference ids

    def from_record(self, record: Dict[str, Any], text_column: Optional[str] = None) -> Any:
        if "text_pair" in record and record["text_pair"] not in (None, ""):
            return {"text": text_field(record, text_column), "text_pair": record["text_pair"]}
        return text_field(record, text_column)

    def check_input(self, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) - {"text", "text_pair"} or not str(value.get("text", "")).strip():
                raise DataError(f"a text-pair input needs keys text and text_pair, got {short(value)}")
            return {"text": str(value["text"]), "text_pair": str(value.get("text_pair", ""))}
        return super().check_input(value)

    def pipeline_kwargs(self) -> Dict[str, Any]:
        top_k = {"top_k": self.cfg.top_k} if self.cfg.top_k else {}
        return {"truncation": True, "max_length": self.ctx.max_length, **top_k}

    def manual(self, batch: List[Any]) -> List[Any]:
        import torch

        tok, model = self.ctx.tokenizer, self.ctx.model
        texts = [x["text"] if isinstance(x, dict) else x for x in batch]
        pairs = [x["text_pair"] if isinstance(x, dict) else None for x in batch]
        options = dict(truncation=True, max_length=self.ctx.max_length)
        if all(p is None for p in pairs) or all(p is not None for p in pairs):
            encoded = tok(texts, None if pairs[0] is None else pairs, padding=True, return_tensors="pt", **options)
        else:  # singles and pairs mixed: encode one by one, then pad together
            encoded = tok.pad([tok(t, p, **options) for t, p in zip(texts, pairs)], return_tensors="pt")
        encoded = encoded.to(self.ctx.device)
        logits = model(**encoded).logits.float()
        function = scores_function(model.config)
        if function == "softmax":
            scores = torch.softmax(logits, dim=-1)
        elif function == "sigmoid":
            scores = torch.sigmoid(logits)
        else:
            scores = logits
        id2label = model.config.id2label
        top_k = self.cfg.top_k
        outputs = []
        for row in scores.cpu().tolist():
            ranked = sorted(({"label": id2label[i], "score": s} for i, s in enumerate(row)),
                            key=lambda d: d["score"], reverse=True)
            outputs.append(ranked[:top_k] if top_k else ranked[0])
        return outputs

    @staticmethod
    def top_label(output: Any) -> str:
        return (output[0] if isinstance(output, list) else output)["label"]

    def quality(self, outputs: List[Any], references: List[Any]) -> Dict[str, float]:
        return classification_quality([self.top_label(o) for o in outputs], references, self.label_names)

    def example_rows(self, items, outputs):
        """Rows of :meth:`quality`: labels compared as it compares them (normalised names); ``f1`` is macro."""
        return label_name_rows(self.scored(items, outputs), lambda output: self.top_label(output), self.label_names)

    # --- training ------------------------------------------------------------------------------------
    def training_data(self, raw, tokenizer, cfg: ExperimentConfig):
        self.data = build_classification_data(raw, tokenizer, cfg.dataset, cfg.tokenizer)
        return self.data

    def new_model(self, model_dir, cfg: ExperimentConfig, data, tokenizer):
        model, self.new_weights = load_sequence_classifier(
            model_dir, cfg.model, num_labels=data.num_labels, id2label=data.id2label,
            is_regression=data.is_regression, pad_token_id=tokenizer.pad_token_id,
            attn_implementation=training_attention(cfg))
        return model

    def collator(self, tokenizer, cfg: ExperimentConfig):
        return build_collator(tokenizer, cfg.collator, cfg.tokenizer)

    def setup_training(self, model_config: PreTrainedConfig, cfg: ExperimentConfig) -> None:
        self.model_config, self.train_auto_class = model_config, self.auto_class

    def metric_function(self, cfg: ExperimentConfig, data):
        return metrics.for_classification(cfg.dataset.metric, cfg.dataset.metric_config, data.num_labels,
                                          data.is_regression)

    def eval_outputs(self, logits, labels, data):
        """Class ids by argmax (the top label inference reports) and the training loss per example."""
        import torch.nn.functional as F

        if data.is_regression:
            predictions = logits.squeeze(-1)
            return predictions, F.mse_loss(predictions, labels.float(), reduction="none")
        return logits.argmax(-1), F.cross_entropy(logits, labels, reduction="none")

    def eval_rows(self, output, batch):
        predictions, loss = self.eval_outputs(output.logits.float(), batch["labels"], self.data)
        return {"prediction": predictions, "label": batch["labels"], "loss": loss}

    def eval_metrics(self, rows, compute):
        scores = compute(rows["prediction"].tolist(), rows["label"].tolist())
        return {**{k: float(v) for k, v in scores.items()}, "loss": float(rows["loss"].float().mean())}

    def eval_records(self, columns, scores, data, cfg: ExperimentConfig):
        """One row per eval example: label ids (shown as names) or scores, and each metric's statistics."""
        names = [name for name in scores if name != "loss"] + (["loss"] if "loss" in columns else [])
        metrics, skipped = label_metrics(names, list(range(data.num_labels)), data.is_regression)
        predictions, labels = columns["prediction"].tolist(), columns["label"].tolist()
        ids = data.eval_ids or [str(number) for number in range(len(labels))]
        label_names = data.label_names

        def shown(value):
            return label_names[value] if label_names and isinstance(value, int) else value

        losses = columns["loss"].float().tolist() if "loss" in columns else None
        return ExampleRecords(eval_set_name(cfg.dataset), metrics,
                              label_rows(ids, predictions, labels, metrics, losses, shown), skipped, prefix="eval_")


class SentimentAnalysis(TextClassification):
    name = "sentiment-analysis"
