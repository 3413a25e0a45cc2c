"""``python scripts/compare.py <run or sweep dirs...>``: the config keys that differ between runs and
their metrics, side by side (one column per run; ``--rows`` for one row per run). Runs that differ only
in their seed are one configuration: when some configuration has several runs, a second table gives
each configuration's mean ± 95 % confidence interval (Student's t) over its finished runs, the best
configuration (on the mean) marked ``*``; a third compares every replicated configuration with the best over
its seeds (Welch, Holm, the seeds a difference needs: ``experiments.metrics.significance``). Two runs with
per-example records are also compared example by example (``experiments.report.paired``)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from experiments.errors import ExperimentError
from experiments.metrics.examples import RECORD_KEY
from experiments.metrics.significance import against_best
from experiments.report.paired import compare_examples, load_examples, paired_payload, paired_text
from experiments.report.runs_index import (
    NOISE_KEYS,
    differing_keys,
    find_runs,
    load_run,
    quality_metric_names,
)
from experiments.sweep.summary import SEED_KEYS, best_config, choose_metric, direction_for, mean_ci, mean_text

PAIRED_HELP = """Two runs evaluated on the same examples (each with eval_predictions.jsonl: training writes it at
its final evaluation, mode=infer on a dataset split with references writes it too) are also compared example
by example: per metric A, B, B - A, its 95 % CI by paired bootstrap (corpus metrics such as BLEU, F1, MCC and
Pearson recomputed in every resample), a p-value by approximate randomization (McNemar's exact test beside
it for accuracy) and a verdict: "B is better", "A is better" or "not distinguishable at 95 %". Runs scored
on different examples are refused. --json prints {"metrics": {NAME: {"a", "b", "difference", "ci95",
"p_value", "test", "n_examples", "verdict"}}}. See docs/comparing.md."""


def collect(paths: List[str]) -> list:
    runs = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ExperimentError(f"'{raw}' is not a directory (give run dirs or sweep dirs)")
        found = find_runs([path])
        if not found:
            raise ExperimentError(f"no run found in '{raw}' (a run dir holds config.yaml and metrics.json)")
        runs += [load_run(p) for p in found]
    return list({r.path: r for r in runs}.values())


def labels(runs: list) -> List[str]:
    """Short unique names: each run's path below the runs' common parent."""
    paths = [str(r.path) for r in runs]
    common = os.path.commonpath(paths) if len(paths) > 1 else str(Path(paths[0]).parent)
    out = [os.path.relpath(p, common) for p in paths]
    return [o if o != "." else Path(p).name for o, p in zip(out, paths)]


def comparison_table(runs: list, show_all: bool = False, metrics: Optional[List[str]] = None):
    import pandas as pd

    keys = sorted({k for r in runs for k in r.config if not k.startswith(NOISE_KEYS)}) if show_all \
        else differing_keys(runs)
    names = metrics or quality_metric_names(runs)
    columns = labels(runs)
    data = {}
    for label, run in zip(columns, runs):
        column = {key: _cell(run.config.get(key, "-")) for key in keys}
        column["status"] = run.status
        column.update({m: run.final.get(m) for m in names})
        data[label] = column
    frame = pd.DataFrame(data, index=[*keys, "status", *names])
    return frame


def config_groups(runs: list) -> Tuple[List[str], List[List[int]]]:
    """(the config keys that tell configurations apart, the runs' positions per configuration): runs
    whose differing config values are the same but for the seed are one configuration."""
    keys = [k for k in differing_keys(runs) if k not in SEED_KEYS]
    groups: Dict[str, List[int]] = {}
    for pos, run in enumerate(runs):
        groups.setdefault(json.dumps([run.config.get(k, "<unset>") for k in keys], default=str), []).append(pos)
    return keys, list(groups.values())


def configurations_table(runs: list, metrics: Optional[List[str]] = None):
    """One row per configuration: its values of the keys that differ, n finished runs, each metric's mean ±
    95 % CI, the runs; the best configuration on the mean of the deciding metric (the first eval metric that
    is not the loss) marked ``*``. None when no configuration has more than one run."""
    import pandas as pd

    keys, groups = config_groups(runs)
    if all(len(group) < 2 for group in groups):
        return None
    names = metrics or quality_metric_names(runs)
    decide = choose_metric(None, None, names)
    names_shown = labels(runs)
    rows, stats = [], []
    for number, group in enumerate(groups):
        done = [runs[p] for p in group if runs[p].status == "finished"]
        per_metric = {m: mean_ci([r.final[m] for r in done if m in r.final]) for m in names}
        stats.append({"config": number, **per_metric.get(decide, {"mean": None})})
        row = {"config": number, **{k: _cell(runs[group[0]].config.get(k, "-")) for k in keys}, "n": len(done)}
        row.update({m: mean_text(per_metric[m]) for m in names})
        row["runs"] = " ".join(names_shown[p] for p in group)
        rows.append(row)
    best = best_config(stats, direction_for(decide, None)) if decide else None
    for row in rows:
        row["best"] = "*" if row["config"] == best else ""
    frame = pd.DataFrame(rows)
    return frame[["config", "best", *[c for c in frame.columns if c not in ("config", "best")]]]


def verdicts_table(runs: list, metric: Optional[str] = None):
    """Every configuration with 2+ finished runs against the best one (on the mean of the deciding metric), over
    seeds: the difference of means (config - best) with a bootstrap 95 % CI, Welch's p-value and the same
    corrected together (Holm), the probability that a random seed of the configuration beats one of the best,
    the seeds per configuration a difference this size needs, and a verdict. None when fewer than two
    configurations have 2+ finished runs."""
    import pandas as pd

    decide = metric or choose_metric(None, None, quality_metric_names(runs))
    values = [[runs[p].final[decide] for p in group if runs[p].status == "finished" and decide in runs[p].final]
              for group in config_groups(runs)[1]] if decide else []
    verdicts = against_best(values, higher_is_better=direction_for(decide, None) == "maximize")
    if sum(v is not None for v in verdicts) < 2:
        return None
    rows = []
    for number, v in enumerate(verdicts):
        if v is None:
            continue
        row = {"config": number, "metric": decide, "mean": v["mean"], "n": v["n"]}
        if "difference" in v:
            row.update({"difference": v["difference"], "ci95": f"[{v['ci95'][0]:.4g}, {v['ci95'][1]:.4g}]",
                        "p (Welch)": v["p_value"], "p (Holm)": v["p_holm"], "P(seed beats best)": v["p_beats_best"],
                        "seeds needed": v["seeds_needed"]})
        rows.append(dict(row, **{"vs best": v["vs_best"]}))
    rows.sort(key=lambda row: row["vs best"] != "best")  # the best first
    return pd.DataFrame(rows)


def _shown(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "null" if value is None else str(value)


def _paired_examples(runs: list, args) -> Optional[tuple]:
    """Both runs' per-example records when the paired test applies: asked for (``--paired`` / ``--json``), or
    exactly two runs that both have them. Asked for and impossible: ExperimentError."""
    asked = args.paired or args.json
    if not asked and (len(runs) != 2 or not all((r.metrics or {}).get(RECORD_KEY) for r in runs)):
        return None
    if len(runs) != 2:
        raise ExperimentError(f"a paired test compares exactly two runs; found {len(runs)} in "
                              f"{' '.join(args.paths)}")
    return load_examples(runs[0]), load_examples(runs[1])


def paired_report(runs: list, args) -> Optional[str]:
    """The paired comparison of two runs example by example (text, or JSON with ``--json``); None when it
    does not apply."""
    examples = _paired_examples(runs, args)
    if examples is None:
        return None
    results, notes = compare_examples(*examples, resamples=args.resamples, seed=args.seed)
    if args.json:
        return json.dumps(paired_payload(results, notes, *examples), indent=2)
    return paired_text(results, notes, *examples, labels(runs), args.resamples, _shown)


def _at_least_100(text: str) -> int:
    """``--resamples``: a whole number of at least 100 (fewer cannot give a 95 % interval); else argparse's one line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 100:
        raise argparse.ArgumentTypeError(f"{value} is fewer than 100 resamples")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compare.py", description=__doc__.split("\n\n")[0],
                                     epilog=PAIRED_HELP)
    parser.add_argument("paths", nargs="+", help="run dirs and/or sweep dirs")
    parser.add_argument("--all", action="store_true", help="show every config key, not only those that differ")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names (default: all quality metrics)")
    parser.add_argument("--rows", action="store_true", help="one row per run instead of one column per run")
    parser.add_argument("--paired", action="store_true",
                        help="compare two runs example by example (the default when exactly two runs are given and "
                             "both have eval_predictions.jsonl); refuse when that is impossible")
    parser.add_argument("--json", action="store_true",
                        help="print only the paired comparison of two runs, as JSON (implies --paired)")
    parser.add_argument("--resamples", type=_at_least_100, default=10_000, help="bootstrap / randomization resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        runs = collect(args.paths)
        paired = paired_report(runs, args) if args.paired or args.json else None
    except ExperimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(paired)
        return 0
    print_tables(runs, args)
    if not args.paired:
        try:
            paired = paired_report(runs, args)
        except ExperimentError as exc:  # not asked for: the tables stand, the reason is one line
            print(f"\nno paired test: {exc}", file=sys.stderr)
    if paired:
        print("\n" + paired)
    return 0


def print_tables(runs: list, args) -> None:
    """The side-by-side table, the configurations table and the over-seeds verdicts."""
    frame = comparison_table(runs, show_all=args.all, metrics=args.metrics.split(",") if args.metrics else None)
    if args.rows:
        frame = frame.T
    print(frame.map(_shown).to_string())
    configs = configurations_table(runs, metrics=args.metrics.split(",") if args.metrics else None)
    if configs is not None:
        print("\nconfigurations (runs that differ only in the seed; mean ± 95% CI over finished runs):")
        print(configs.to_string(index=False))
    verdicts = verdicts_table(runs, metric=args.metrics.split(",")[0] if args.metrics else None)
    if verdicts is not None:
        print("\nagainst the best configuration, over seeds (Welch's test, p-values corrected together by Holm; "
              "'seeds needed': runs per configuration to tell this difference apart at 95 % with 80 % power):")
        print(verdicts.map(_shown).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
