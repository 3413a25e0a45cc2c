"""question-answering (extractive): start/end logits -> best answer span with character offsets.

transformers 5 has no question-answering pipeline; this is its algorithm on the model API: the context
is split into windows of ``max_length`` tokens overlapping by ``doc_stride``; in each window, start and
end probabilities (softmax over context tokens) give span scores ``p_start * p_end`` for spans of at most
``max_answer_len`` tokens; the best spans over all windows win. Outputs have the old pipeline's shape:
``{"score", "start", "end", "answer"}`` (a list of them when ``top_k > 1``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from experiments import metrics
from experiments.data.prepare import build_collator, select_text_splits
from experiments.data.qa import QA_COLUMNS, build_qa_features, check_qa_rows
from experiments.errors import DataError, ExperimentError
from experiments.metrics.examples import SQUAD_METRICS, ExampleRecords, eval_set_name, squad_stats
from experiments.tasks.base import Item, Task, TrainingData, TrainingTask, short

if TYPE_CHECKING:
    from experiments.config.schema import ExperimentConfig, TaskConfig


def decode_spans(start: np.ndarray, end: np.ndarray, top_k: int, max_answer_len: int,
                 allowed: np.ndarray):
    """The ``top_k`` best (start, end, score) token spans with ``start <= end < start + max_answer_len``."""
    outer = np.matmul(start[:, None], end[None, :])
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    # transformers' pipeline decodes the same way; unlike it, cells that are no span (end before start, too
    # long) never fill the top_k, and a top_k of every cell takes the sort, not argpartition (which refuses it)
    is_span = np.tril(np.triu(np.ones(outer.shape, dtype=bool)), max_answer_len - 1).flatten()
    flat = np.where(is_span, candidates.flatten(), -np.inf)
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) <= top_k:
        order = np.argsort(-flat)
    else:
        order = np.argpartition(-flat, top_k)[:top_k]
        order = order[np.argsort(-flat[order])]
    order = order[is_span[order]]
    starts, ends = np.unravel_index(order, candidates.shape)
    keep = np.isin(starts, allowed.nonzero()) & np.isin(ends, allowed.nonzero())
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends]


class QuestionAnswering(TrainingTask, Task):
    name = "question-answering"
    pipeline_task = None
    auto_class = "AutoModelForQuestionAnswering"
    head = "question-answering (span)"

    def check_model(self, model, tokenizer, task_cfg: TaskConfig) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ExperimentError("question-answering needs a fast tokenizer (character offsets); set tokenizer.use_fast=true")

    def from_text(self, text: str) -> Any:
        return {"question": text}

    def from_record(self, record: Dict[str, Any], text_column: Optional[str] = None) -> Any:
        question = record.get(text_column or "question")
        return {"question": question, "context": record.get("context")}

    def reference_from_record(self, record: Dict[str, Any], reference_column: Optional[str] = None) -> Any:
        value = record.get(reference_column) if reference_column else record.get("answers", record.get("answer"))
        if value in (None, "", []):
            return None
        if isinstance(value, dict):
            return {"text": list(value.get("text", [])), "answer_start": [int(a) for a in value.get("answer_start", [])]}
        texts = [value] if isinstance(value, str) else list(value)
        context = str(record.get("context") or "")
        return {"text": texts, "answer_start": [context.find(t) for t in texts]}

    def check_input(self, value: Any) -> Any:
        if not isinstance(value, dict) or not str(value.get("context") or "").strip():
            raise DataError(f"question-answering input without a context: {short(value)} "
                            f"(give {{question: ..., context: ...}})")
        if not str(value.get("question") or "").strip():
            raise DataError(f"question-answering input without a question: {short(value)}")
        return {"question": str(value["question"]), "context": str(value["context"])}

    def input_text(self, value: Any) -> List[str]:
        return [value["question"], value["context"]]

    def pipeline(self, batch: List[Any]) -> List[Any]:
        return self.manual(batch)  # no question-answering pipeline in transformers 5

    def manual(self, batch: List[Any]) -> List[Any]:
        tok, model, task = self.ctx.tokenizer, self.ctx.model, self.cfg
        max_length = self.ctx.max_length
        question_first = tok.padding_side == "right"
        questions = [x["question"].lstrip() for x in batch]
        contexts = [x["context"] for x in batch]
        stride = min(task.doc_stride, max_length // 2)
        budget = max_length - tok.num_special_tokens_to_add(pair=True)
        for question, context, ids in zip(questions, contexts, tok(questions, add_special_tokens=False)["input_ids"]):
            if len(ids) > task.max_question_len:
                raise DataError(f"question longer than task.max_question_len={task.max_question_len} tokens: "
                                f"{short(question)}")
            if budget - len(ids) <= stride and len(ids) + len(tok(context, add_special_tokens=False,
                                                                   verbose=False)["input_ids"]) > budget:
                # the tokenizer could not advance through the context (a Rust panic, not an exception)
                raise DataError(f"question of {len(ids)} tokens leaves the context no more of task.max_length="
                                f"{max_length} than the windows' overlap of {stride}: shorten it or raise "
                                f"task.max_length: {short(question)}")
        encoded = tok(questions if question_first else contexts, contexts if question_first else questions,
                      truncation="only_second" if question_first else "only_first", max_length=max_length,
                      stride=stride, return_overflowing_tokens=True,
                      return_offsets_mapping=True, padding=True, return_tensors="pt")
        sample_of = encoded.pop("overflow_to_sample_mapping").tolist()
        offsets = encoded.pop("offset_mapping").tolist()
        inputs = {k: v.to(self.ctx.device) for k, v in encoded.items() if k in tok.model_input_names}
        result = model(**inputs)
        start_logits = result.start_logits.detach().float().cpu().numpy()
        end_logits = result.end_logits.detach().float().cpu().numpy()
        attention = encoded["attention_mask"].numpy()
        context_index = 1 if question_first else 0
        top_k = int(task.top_k or 1)
        answers: List[List[Dict[str, Any]]] = [[] for _ in batch]
        null_score = [1e6] * len(batch)
        for feature, sample in enumerate(sample_of):
            sequence_ids = encoded.sequence_ids(feature)
            allowed = np.array([s == context_index for s in sequence_ids], dtype=int) & attention[feature]
            start = np.where(allowed == 0, -10000.0, start_logits[feature])
            end = np.where(allowed == 0, -10000.0, end_logits[feature])
            start = np.exp(start - start.max())
            start = start / start.sum()
            end = np.exp(end - end.max())
            end = end / end.sum()
            if task.handle_impossible_answer:
                null_score[sample] = min(null_score[sample], float(start[0] * end[0]))
            start[0] = end[0] = 0.0
            starts, ends, scores = decode_spans(start, end, top_k, task.max_answer_len, allowed)
            context = contexts[sample]
            for s, e, score in zip(starts, ends, scores):
                begin, finish = offsets[feature][s][0], offsets[feature][e][1]
                answers[sample].append({"score": float(score), "start": int(begin), "end": int(finish),
                                        "answer": context[begin:finish]})
        outputs = []
        for sample, found in enumerate(answers):
            if task.handle_impossible_answer:
                found.append({"score": null_score[sample], "start": 0, "end": 0, "answer": ""})
            found = sorted(found, key=lambda a: a["score"], reverse=True)[:top_k]
            if not found:
                found = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
            outputs.append(found[0] if top_k == 1 else found)
        return outputs

    def output_text(self, output: Any) -> Optional[str]:
        return None

    def quality(self, outputs: List[Any], references: List[Any]) -> Dict[str, float]:
        rows = [(i, o, r) for i, (o, r) in enumerate(zip(outputs, references)) if r is not None]
        if not rows:
            return {}
        predictions = [{"id": str(i), "prediction_text": (o[0] if isinstance(o, list) else o)["answer"]}
                       for i, o, _ in rows]
        refs = [{"id": str(i), "answers": r} for i, _, r in rows]
        scores = metrics.load("squad").compute(predictions=predictions, references=refs)
        return {"exact_match": float(scores["exact_match"]), "f1": float(scores["f1"])}

    def example_rows(self, items, outputs):
        """SQuAD exact match and F1 of each question (best over its gold answers), 0-100 as :meth:`quality`."""
        scored = self.scored(items, outputs)
        if not scored:
            return None

        def rows():
            for item, output, reference in scored:
                answer = (output[0] if isinstance(output, list) else output)["answer"]
                yield {"id": item.id, "prediction": answer, "reference": reference,
                       "stats": squad_stats(answer, reference["text"])}

        return dict(SQUAD_METRICS), rows()

    # --- training ------------------------------------------------------------------------------------
    def training_data(self, raw, tokenizer, cfg: ExperimentConfig) -> TrainingData:
        """Windows with answer start/end tokens (experiments.data.qa); the eval rows also as inference items,
        so SQuAD EM / F1 during training come from the same span decoding as ``mode=infer``."""
        self.check_model(None, tokenizer, cfg.task)
        data_cfg = cfg.dataset
        train, evaluation = select_text_splits(raw, data_cfg, list(QA_COLUMNS))
        check_qa_rows(train, data_cfg.train_split)
        check_qa_rows(evaluation, data_cfg.eval_split or "held-out")
        max_length = int(cfg.task.max_length or cfg.tokenizer.max_length)
        features = [build_qa_features(split, tokenizer, max_length=max_length, doc_stride=cfg.task.doc_stride,
                                      num_proc=data_cfg.num_proc, desc=f"QA windows {data_cfg.name} {name}",
                                      split_name=split_name).remove_columns(["example_id"])
                    for name, split, split_name in (("train", train, data_cfg.train_split),
                                                    ("eval", evaluation, data_cfg.eval_split or "held-out"))]
        items = [Item(row["id"], {"question": row["question"], "context": row["context"]}, row["answers"])
                 for row in evaluation]
        self._check_question_lengths(items, tokenizer, cfg.task, data_cfg.eval_split or "held-out")
        return TrainingData(features[0], features[1], items)

    @staticmethod
    def _check_question_lengths(items: List[Item], tokenizer, task_cfg: TaskConfig, split: str) -> None:
        """Evaluation answers eval questions as ``mode=infer`` does: one longer than ``task.max_question_len``
        stops now, naming its row, not at the first evaluation."""
        questions = [item.input["question"].lstrip() for item in items]
        for row, ids in enumerate(tokenizer(questions, add_special_tokens=False)["input_ids"] if questions else []):
            if len(ids) > task_cfg.max_question_len:
                raise DataError(f"split '{split}', row {row} (id {short(str(items[row].id))}): the question has "
                                f"{len(ids)} tokens, more than task.max_question_len={task_cfg.max_question_len}; "
                                f"raise it or shorten the question")

    def collator(self, tokenizer, cfg: ExperimentConfig):
        return build_collator(tokenizer, cfg.collator, cfg.tokenizer)

    def eval_rows(self, output, batch):
        import torch.nn.functional as F

        start = F.cross_entropy(output.start_logits.float(), batch["start_positions"], reduction="none")
        end = F.cross_entropy(output.end_logits.float(), batch["end_positions"], reduction="none")
        return {"loss": (start + end) / 2}

    def inference_metrics(self, model, tokenizer, cfg: ExperimentConfig, data) -> Dict[str, float]:
        items = [Item(i.id, self.check_input(i.input), i.reference) for i in data.eval_items]
        outputs = self.run_inference(model, tokenizer, cfg, items)
        self.answered = (items, outputs)  # for eval_records
        return self.quality_of(outputs, items)

    def eval_records(self, columns, scores, data, cfg: ExperimentConfig):
        """One row per question: the decoded answer, the gold answers, exact match and F1 (the loss is per
        window of a context, not per question: left out)."""
        found = self.example_rows(*getattr(self, "answered", ([], [])))
        if found is None:
            return None
        return ExampleRecords(eval_set_name(cfg.dataset), found[0], found[1], prefix="eval_",
                              not_recomputed={"loss": "per window of a context, not per question"})
