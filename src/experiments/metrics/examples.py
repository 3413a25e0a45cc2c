"""Per-example evaluation records: ``eval_predictions.jsonl``, one row per evaluated example.

A row holds the example's stable id, the prediction, the reference and, per metric, the example's
*sufficient statistics* (``stats``): numbers whose sums over examples give the corpus value (accuracy from
``[correct, 1]``, binary F1 from ``[tp, fp, fn]``, BLEU from n-gram matches and totals, ...; see
:data:`experiments.metrics.significance.STATISTICS`). Corpus metrics are therefore recomputed from the rows,
never averaged, and the same rows drive the paired tests of ``experiments-compare``. How each metric is
recomputed (its statistic, its direction, the class order of per-class statistics) is recorded in the run's
metrics.json under ``eval_predictions`` (:func:`write_records` returns it); metrics that are not sums over
examples (Spearman's rank correlation) are listed there under ``not_recomputed``, with the reason.

Builders here turn predictions and references into rows; the tasks call them (``tasks/*.py``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from experiments.errors import DataError, WriteFailed, reason_of
from experiments.metrics.significance import STATISTICS

if TYPE_CHECKING:  # annotations only
    from experiments.config.schema import DatasetConfig

EVAL_PREDICTIONS_FILE = "eval_predictions.jsonl"
RECORD_KEY = "eval_predictions"  # metrics.json: how the rows' statistics become the metrics

Row = Dict[str, Any]


@dataclass
class ExampleRecords:
    """One evaluation's rows (streamed: an iterator is fine) and how each metric is recomputed from them."""

    eval_set: str  # "<dataset>:<split>[...]": two runs compare only on the same one
    metrics: Dict[str, Dict[str, Any]]  # name -> {"statistic", "higher_is_better"[, "classes"]}
    rows: Iterable[Row]
    not_recomputed: Dict[str, str] = field(default_factory=dict)  # metric -> why not from the rows
    prefix: str = ""  # the metrics' keys in metrics.json "final": training's are "eval_<name>"


def spec(statistic: str, higher_is_better: bool = True, **extra: Any) -> Dict[str, Any]:
    return {"statistic": statistic, "higher_is_better": higher_is_better, **extra}


# --- labels and scores (classification, regression) ----------------------------------------------------
NOT_A_SUM = "a rank correlation: not a sum over examples (left out of the per-example records)"


def label_metrics(names: Iterable[str], classes: Sequence[Any], is_regression: bool
                  ) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, str]]:
    """How the classification / regression metrics ``names`` are recomputed, and those that cannot be."""
    binary = len(classes) == 2 and not is_regression
    known: Dict[str, Dict[str, Any]] = {}
    skipped: Dict[str, str] = {}
    for name in names:
        if name in ("accuracy",) and not is_regression:
            known[name] = spec("mean_score")
        elif name == "f1" and binary:
            known[name] = spec("binary_f1")
        elif name in ("f1_macro", "f1") and not is_regression:
            known[name] = spec("macro_f1", classes=list(classes))
        elif name == "matthews_correlation" and not is_regression:
            known[name] = spec("matthews") if binary else spec("matthews_multiclass", classes=list(classes))
        elif name in ("pearson", "pearsonr") and is_regression:
            known[name] = spec("pearson")
        elif name in ("mse", "loss"):
            known[name] = spec("mean_score", higher_is_better=False)
        else:
            skipped[name] = NOT_A_SUM if "spearman" in name else "no per-example statistic for this metric"
    return known, skipped


def _label_stats(statistic: str, prediction: Any, reference: Any, classes: Sequence[Any]) -> List[float]:
    if statistic == "mean_score":
        return [float(prediction == reference), 1]
    if statistic in ("binary_f1", "matthews"):
        tp, fp = int(prediction == 1 and reference == 1), int(prediction == 1 and reference != 1)
        fn, tn = int(prediction != 1 and reference == 1), int(prediction != 1 and reference != 1)
        return [tp, fp, fn] if statistic == "binary_f1" else [tp, fp, fn, tn]
    if statistic == "macro_f1":
        return [int(x) for c in classes for x in (prediction == c and reference == c,
                                                   prediction == c and reference != c,
                                                   prediction != c and reference == c)]
    if statistic == "matthews_multiclass":
        cell = list(classes).index(reference) * len(classes) + list(classes).index(prediction)
        return [int(i == cell) for i in range(len(classes) ** 2)]
    if statistic == "pearson":
        x, y = float(prediction), float(reference)
        return [x, y, x * x, y * y, x * y, 1]
    raise ValueError(f"no label statistic {statistic!r}")


def label_rows(ids: Sequence[str], predictions: Sequence[Any], references: Sequence[Any],
               metrics: Dict[str, Dict[str, Any]], losses: Optional[Sequence[float]] = None,
               shown: Optional[Callable[[Any], Any]] = None) -> Iterator[Row]:
    """Rows of labelled examples: ``predictions`` / ``references`` in the class space of ``metrics``' classes
    (ids or names) or scores (regression); ``shown`` turns them into what the row displays (e.g. names)."""
    shown = shown or (lambda value: value)
    for number, (example, prediction, reference) in enumerate(zip(ids, predictions, references)):
        stats: Dict[str, List[float]] = {}
        for name, entry in metrics.items():
            if name == "loss":
                if losses is not None:
                    stats[name] = [float(losses[number]), 1]
            elif name == "mse":
                stats[name] = [(float(prediction) - float(reference)) ** 2, 1]
            else:
                stats[name] = _label_stats(entry["statistic"], prediction, reference, entry.get("classes", ()))
        yield {"id": str(example), "prediction": shown(prediction), "reference": shown(reference), "stats": stats}


# --- text metrics (QA, translation, summarization) and token losses ----------------------------------------
def squad_stats(prediction: str, answers: Sequence[str]) -> Dict[str, List[float]]:
    """SQuAD v1.1 exact match and token F1 of one question (best over its gold answers), 0-100."""
    from experiments.metrics.squad.squad import exact_match_score, token_f1_score

    answers = list(answers) or [""]
    return {"exact_match": [100.0 * max(exact_match_score(prediction, a) for a in answers), 1],
            "f1": [100.0 * max(token_f1_score(prediction, a) for a in answers), 1]}


SQUAD_METRICS = {"exact_match": spec("mean_score"), "f1": spec("mean_score")}
TRANSLATION_METRICS = {"bleu": spec("bleu_exp"), "chrf": spec("chrf")}
TOKEN_LOSS_METRICS = {"loss": spec("mean_score", higher_is_better=False),
                      "perplexity": spec("perplexity", higher_is_better=False)}


def translation_stats(predictions: Sequence[str], references: Sequence[str], chunk: int = 1000
                      ) -> Iterator[Dict[str, List[float]]]:
    """sacrebleu's segment statistics of BLEU (reordered to ``[matches 1-4, totals 1-4, hyp len, ref len]``)
    and chrF, in chunks (the corpus scores of the ``sacrebleu`` and ``chrf`` metrics are functions of their
    sums: sacrebleu computes them the same way)."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    for start in range(0, len(predictions), chunk):
        hyps, refs = list(predictions[start:start + chunk]), [list(references[start:start + chunk])]
        for b, c in zip(bleu._extract_corpus_statistics(hyps, refs), chrf._extract_corpus_statistics(hyps, refs)):
            yield {"bleu": [*b[2:10], b[0], b[1]], "chrf": list(c)}


# The ROUGE variants the ``rouge`` metric reports by default; here, not in metrics/rouge/rouge.py, so that a task can
# name them without importing rouge_score (and nltk, ~1.5 s) in runs that never score a summary.
DEFAULT_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge_stats(predictions: Sequence[str], references: Sequence[str], types: Sequence[str]
                ) -> Iterator[Dict[str, List[float]]]:
    """Each example's ROUGE F-measures (what the ``rouge`` metric averages), as ``[f, 1]``."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(rouge_types=list(types))
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)
        yield {name: [float(scores[name].fmeasure), 1] for name in types}


def token_loss_stats(loss_sum: float, tokens: int) -> Dict[str, List[float]]:
    return {"loss": [float(loss_sum), int(tokens)], "perplexity": [float(loss_sum), int(tokens)]}


# --- the file ----------------------------------------------------------------------------------------
def write_records(run_dir: Path, records: ExampleRecords) -> Dict[str, Any]:
    """Stream the rows to ``eval_predictions.jsonl`` (a temporary file renamed over it: a reader sees the old
    file or the new one); returns what metrics.json records under ``eval_predictions``."""
    path = Path(run_dir) / EVAL_PREDICTIONS_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in records.rows:
                handle.write(json.dumps(row, ensure_ascii=False, allow_nan=True) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WriteFailed(path, reason_of(exc)) from None
    return {"file": EVAL_PREDICTIONS_FILE, "examples": count, "eval_set": records.eval_set,
            "metric_prefix": records.prefix, "metrics": records.metrics, "not_recomputed": records.not_recomputed}


def read_rows(path: Path) -> Iterator[Row]:
    """The rows of an ``eval_predictions.jsonl``; a damaged line stops in one line naming it."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}, line {number}: not a JSON row ({exc})") from None
            if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("stats"), dict):
                raise DataError(f"{path}, line {number}: a row needs an id and stats")
            yield row


def statistics_table(rows: Iterable[Row], name: str) -> Tuple[List[str], "Any"]:
    """(ids, an (n, k) array) of the rows that carry metric ``name``'s statistics, in file order."""
    import numpy as np

    ids, values = [], []
    for row in rows:
        if name in row["stats"]:
            ids.append(str(row["id"]))
            values.append(row["stats"][name])
    return ids, np.asarray(values, dtype=float).reshape(len(values), -1)


def recompute(rows: Sequence[Row], metrics: Dict[str, Dict[str, Any]]) -> Dict[str, float]:
    """Each metric's corpus value from the rows' summed statistics."""
    values = {}
    for name, entry in metrics.items():
        _, table = statistics_table(rows, name)
        if len(table):
            values[name] = float(STATISTICS[entry["statistic"]](table.sum(axis=0)))
    return values


def eval_set_name(data_cfg: DatasetConfig) -> str:
    """The eval set a training run scores, from its dataset config: ``<name>:<split>``, or the share of the
    train split held out (with its seed). Which of its rows were scored, the rows' ids say."""
    name = data_cfg.name
    if data_cfg.eval_split:
        return f"{name}:{data_cfg.eval_split}"
    held = f"by {data_cfg.split_by}, " if data_cfg.split_by else ""
    return (f"{name}:{data_cfg.train_split} (held out {data_cfg.validation_fraction:g}, {held}"
            f"split_seed {data_cfg.split_seed})")
