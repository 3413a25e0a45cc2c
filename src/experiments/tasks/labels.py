"""Classification quality: predicted label names against reference labels (accuracy and macro F1)."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence

from experiments import metrics
from experiments.metrics.examples import label_rows, spec

_GENERIC = re.compile(r"^label_(\d+)$", re.IGNORECASE)


def normalise(label: Any, names: Optional[Sequence[str]] = None) -> str:
    """A comparable form of a label: lower-case name; ids and ``LABEL_k`` map through ``names``."""
    if isinstance(label, bool):
        label = int(label)
    if isinstance(label, int) and names and 0 <= label < len(names):
        return str(names[label]).strip().lower()
    text = str(label).strip()
    match = _GENERIC.match(text)
    if match and names and int(match.group(1)) < len(names):
        return str(names[int(match.group(1))]).strip().lower()
    return text.lower()


def classification_quality(predicted: List[str], references: List[Any],
                           names: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """``accuracy`` and ``f1`` (macro) from the bundled evaluate modules, over items with a reference."""
    pairs = [(normalise(p, names), normalise(r, names)) for p, r in zip(predicted, references) if r is not None]
    if not pairs:
        return {}
    vocab = {label: i for i, label in enumerate(sorted({x for pair in pairs for x in pair}))}
    preds = [vocab[p] for p, _ in pairs]
    refs = [vocab[r] for _, r in pairs]
    accuracy = metrics.load("accuracy").compute(predictions=preds, references=refs)["accuracy"]
    f1 = metrics.load("f1").compute(predictions=preds, references=refs, average="macro")["f1"]
    return {"accuracy": float(accuracy), "f1": float(f1)}


def label_name_rows(scored, top_label, names):
    """({accuracy, f1 (macro)}, rows) of inference labels against references, both normalised as
    :func:`classification_quality` compares them (the classes: those that occur)."""
    if not scored:
        return None
    predicted = [normalise(top_label(output), names) for _, output, _ in scored]
    references = [normalise(reference, names) for _, _, reference in scored]
    metrics = {"accuracy": spec("mean_score"), "f1": spec("macro_f1", classes=sorted(set(predicted) | set(references)))}
    return metrics, label_rows([item.id for item, _, _ in scored], predicted, references, metrics)
