"""Two runs on the same eval examples, metric by metric: B - A with a paired-bootstrap 95 % CI, an approximate
randomization p-value (McNemar's exact test beside it for accuracy) and a verdict, from each run's
``eval_predictions.jsonl`` (:mod:`experiments.metrics.examples`): corpus metrics are recomputed from the
examples' summed statistics in every resample (:mod:`experiments.metrics.significance`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from experiments.errors import ExperimentError
from experiments.metrics.examples import EVAL_PREDICTIONS_FILE, RECORD_KEY, read_rows, statistics_table
from experiments.metrics.significance import STATISTICS, paired

SHOWN_IDS = 3  # ids named in a refusal


@dataclass
class Examples:
    """One run's per-example records: how each metric is recomputed, and per metric (ids, statistics)."""

    path: Path
    eval_set: str
    metrics: Dict[str, Dict[str, Any]]
    not_recomputed: Dict[str, str]
    ids: List[str]
    tables: Dict[str, Tuple[List[str], Any]] = field(default_factory=dict)


def load_examples(run) -> Examples:
    """A run's records (``run``: a runs_index.RunInfo); one line saying how to produce them when it has none."""
    entry = (run.metrics or {}).get(RECORD_KEY)
    path = Path(run.path) / EVAL_PREDICTIONS_FILE
    if not entry or not path.is_file():
        raise ExperimentError(
            f"{run.path} has no per-example records ({EVAL_PREDICTIONS_FILE}); a training run writes them at its "
            f"final evaluation, or run `python run.py mode=infer model.name_or_path={Path(run.path) / 'best'} "
            f"dataset=<its dataset> hydra.run.dir=<a new dir>` on the run's best/ and compare that dir")
    rows = list(read_rows(path))
    examples = Examples(path, entry.get("eval_set", ""), dict(entry.get("metrics", {})),
                        dict(entry.get("not_recomputed", {})), [str(row["id"]) for row in rows])
    for name in examples.metrics:
        examples.tables[name] = statistics_table(rows, name)
    return examples


def _differing(a: List[str], b: List[str]) -> str:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))

    def named(ids: List[str]) -> str:
        more = f" (+{len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else ""
        return ", ".join(ids[:SHOWN_IDS]) + more if ids else "none"

    return f"ids only in A: {named(only_a)}; only in B: {named(only_b)}"


def check_same_examples(a: Examples, b: Examples) -> None:
    """Refuse (one line) runs scored on different eval sets or different examples, or with repeated ids."""
    if a.eval_set != b.eval_set:
        raise ExperimentError(f"the runs were evaluated on different eval sets: A on {a.eval_set!r}, "
                              f"B on {b.eval_set!r}; a paired test needs the same examples")
    if sorted(a.ids) != sorted(b.ids):
        raise ExperimentError(f"the runs were evaluated on different examples ({len(a.ids)} in A, {len(b.ids)} in "
                              f"B; {_differing(a.ids, b.ids)}); a paired test needs the same examples")
    if len(set(a.ids)) != len(a.ids) and a.ids != b.ids:
        raise ExperimentError(f"example ids repeat in {a.path} and the runs list them in different orders: "
                              f"cannot pair the examples")


def _by_class(table, classes: List[Any], union: List[Any], statistic: str):
    """Per-class statistics laid out over ``union`` (classes a run never saw contribute zeros)."""
    import numpy as np

    if classes == union:
        return table
    if statistic == "matthews_multiclass":
        cube = table.reshape(len(table), len(classes), len(classes))
        out = np.zeros((len(table), len(union), len(union)))
        where = np.asarray([union.index(c) for c in classes])
        out[:, where[:, None], where[None, :]] = cube
        return out.reshape(len(table), -1)
    out = np.zeros((len(table), len(union), 3))
    out[:, [union.index(c) for c in classes], :] = table.reshape(len(table), len(classes), 3)
    return out.reshape(len(table), -1)


def paired_tables(a: Examples, b: Examples, name: str):
    """(stats of A, stats of B) of metric ``name`` on the same examples in the same order; None when the runs
    record it differently or on different examples (the reason, a str, instead)."""
    import numpy as np

    spec_a, spec_b = a.metrics[name], b.metrics[name]
    if spec_a["statistic"] != spec_b["statistic"]:
        return f"recorded as {spec_a['statistic']} in A and {spec_b['statistic']} in B"
    (ids_a, table_a), (ids_b, table_b) = a.tables[name], b.tables[name]
    if sorted(ids_a) != sorted(ids_b):
        return f"scored on different examples ({_differing(ids_a, ids_b)})"
    if ids_a != ids_b:
        order = {example: number for number, example in enumerate(ids_b)}
        table_b = table_b[np.asarray([order[example] for example in ids_a], dtype=int)]
    if "classes" in spec_a:
        union = sorted(set(spec_a["classes"]) | set(spec_b["classes"]), key=str)
        table_a = _by_class(table_a, list(spec_a["classes"]), union, spec_a["statistic"])
        table_b = _by_class(table_b, list(spec_b["classes"]), union, spec_b["statistic"])
    return table_a, table_b


def compare_examples(a: Examples, b: Examples, resamples: int, seed: int) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """{metric: Paired} for every metric both runs recorded alike, and {metric: why it is not tested}."""
    check_same_examples(a, b)
    results, notes = {}, {**a.not_recomputed, **b.not_recomputed}
    for name in [m for m in a.metrics if m in b.metrics]:
        tables = paired_tables(a, b, name)
        if isinstance(tables, str):
            notes[name] = tables
            continue
        table_a, table_b = tables
        if not len(table_a):
            notes[name] = "no example carries it"
            continue
        entry = a.metrics[name]
        correct = {}
        if name == "accuracy":  # McNemar's exact test as a cross-check of the resampling
            correct = {"correct_a": table_a[:, 0] > 0, "correct_b": table_b[:, 0] > 0}
        results[name] = paired(table_a, table_b, STATISTICS[entry["statistic"]],
                               higher_is_better=entry.get("higher_is_better", True), resamples=resamples,
                               seed=seed, **correct)
    for name in sorted(set(a.metrics) ^ set(b.metrics)):
        notes.setdefault(name, "recorded by one run only")
    return results, notes


def paired_payload(results: Dict[str, Any], notes: Dict[str, str], a: Examples, b: Examples) -> Dict[str, Any]:
    """What ``--json`` prints."""
    return {"a": str(a.path.parent), "b": str(b.path.parent), "eval_set": a.eval_set,
            "metrics": {name: result.as_dict() for name, result in results.items()}, "not_tested": notes}


def paired_frame(results: Dict[str, Any]):
    import pandas as pd

    rows = []
    for name, r in results.items():
        rows.append({"metric": name, "A": r.a, "B": r.b, "B - A": r.difference,
                     "95% CI": f"[{r.ci95[0]:.4g}, {r.ci95[1]:.4g}]", "p": r.p_value,
                     "McNemar p": r.mcnemar_p, "n": r.n_examples, "verdict": r.verdict})
    return pd.DataFrame(rows)


def paired_text(results: Dict[str, Any], notes: Dict[str, str], a: Examples, b: Examples, labels: List[str],
                resamples: int, shown) -> str:
    """The paired table with the lines that say what it is, and what was left out and why."""
    n = max((r.n_examples for r in results.values()), default=0)
    lines = [f"paired test, A = {labels[0]}, B = {labels[1]}, on the same {n} examples of {a.eval_set}",
             f"(95 % CI of B - A from {resamples} paired bootstrap resamples of the examples, corpus metrics "
             f"recomputed in each; p: approximate randomization; each metric tested on its own, not corrected "
             f"for testing several)"]
    if results:
        lines.append(paired_frame(results).map(shown).to_string(index=False))
    lines += [f"not tested: {name}: {why}" for name, why in sorted(notes.items())]
    return "\n".join(lines)
