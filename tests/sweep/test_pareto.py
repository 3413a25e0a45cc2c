"""Multi-objective sweeps: objective values per job (final metrics, else top-level numbers of metrics.json) and
the Pareto front of the finished jobs, computed from the records."""
from __future__ import annotations

import csv
import itertools
import json
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.sweep import records
from experiments.sweep.summary import (
    build_summary,
    dominates,
    format_table,
    headline,
    pareto_front,
    summarize,
    write_summary,
)

# job: (status, eval_accuracy, total_params)
JOBS = {0: ("finished", 0.80, 100), 1: ("finished", 0.85, 200), 2: ("finished", 0.70, 150),  # 2: dominated by 0
        3: ("finished", 0.90, 400), 4: ("pruned", 0.99, 10), 5: ("failed", None, None),
        6: ("finished", 0.80, 100)}  # same point as job 0: both on the front


def make_job(sweep: Path, num: int, status: str, acc, params) -> None:
    run_dir = sweep / str(num)
    run_dir.mkdir(parents=True)
    if acc is not None:
        payload = {"final": {"eval_accuracy": acc, "eval_loss": 0.5}, "total_params": params}
        (run_dir / "metrics.json").write_text(json.dumps(payload))
    now = time.time()
    record = records.build(job=num, overrides=[f"trainer.lr={num}e-5"], status=status, run_dir=run_dir,
                           sweep_dir=sweep, sweep="mo", started_at=now - 1, finished_at=now,
                           error="boom" if status == "failed" else None)
    records.write(run_dir, record)


@pytest.fixture
def multi(tmp_path):
    for num, (status, acc, params) in JOBS.items():
        make_job(tmp_path, num, status, acc, params)
    return tmp_path


def brute_force_front():
    points = {n: (acc, -params) for n, (status, acc, params) in JOBS.items() if status == "finished"}
    return sorted(n for n, p in points.items()
                  if not any(all(a >= b for a, b in zip(q, p)) and q != p for q in points.values()))


def test_pareto_front_from_the_records(multi):
    summary = build_summary(multi, objective="eval_accuracy", objectives=["eval_accuracy", "total_params"],
                            sweeper_direction=["maximize", "minimize"])
    assert summary["objectives"] == ["eval_accuracy", "total_params"]
    assert summary["directions"] == ["maximize", "minimize"]
    assert summary["pareto_front"] == brute_force_front() == [0, 1, 3, 6]
    by_job = {j["job"]: j for j in summary["jobs"]}
    assert by_job[2]["objective_values"] == {"eval_accuracy": 0.70, "total_params": 150.0}
    assert by_job[5]["objective_values"] == {"eval_accuracy": None, "total_params": None}
    assert not by_job[4]["pareto"] and not by_job[5]["pareto"]  # pruned and failed are never on the front
    assert summary["metric"] == "eval_accuracy" and summary["best_job"] == 3


def test_table_headline_and_csv_show_the_front(multi):
    summary = build_summary(multi, objectives=["eval_accuracy", "total_params"],
                            sweeper_direction=["maximize", "minimize"])
    table = format_table(summary).splitlines()
    header = table[0].split()
    assert "pareto" in header and "total_params" in header
    statuses = {"finished", "pruned", "failed"}
    marked = []
    for line in table[1:]:
        tokens = line.split()
        after_status = next(i for i, t in enumerate(tokens) if t in statuses) + 1
        if tokens[after_status] == "*":
            marked.append(int(tokens[0]))
    assert marked == summary["pareto_front"]
    assert "Pareto front (eval_accuracy max, total_params min): jobs 0, 1, 3, 6" in headline(summary)
    _json, csv_path = write_summary(summary, multi)
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["job"] for r in rows if r["pareto"] == "True"] == ["0", "1", "3", "6"]
    assert {r["job"]: r["total_params"] for r in rows}["2"] == "150.0"


def test_summarize_reads_objectives_and_directions_from_the_config(multi):
    cfg = OmegaConf.create({"objective": "eval_accuracy", "hydra": {
        "sweep": {"dir": str(multi)},
        "sweeper": {"objectives": ["eval_accuracy", "total_params"], "direction": ["maximize", "minimize"]}}})
    summary = summarize(cfg)
    saved = json.loads((multi / "sweep_summary.json").read_text())
    assert saved["pareto_front"] == summary["pareto_front"] == [0, 1, 3, 6]
    assert saved["directions"] == ["maximize", "minimize"]


def test_single_objective_sweeps_have_no_front(multi):
    summary = build_summary(multi, objectives=["eval_accuracy"])
    assert "pareto_front" not in summary and "objective_values" not in summary["jobs"][0]
    assert "pareto" not in format_table(summary).splitlines()[0]


def test_front_on_random_points_matches_brute_force():
    import random

    rng = random.Random(0)
    jobs = [{"job": n, "status": "finished", "objective_values": {"a": rng.randint(0, 5), "b": rng.randint(0, 5),
                                                                   "c": rng.random()}} for n in range(40)]
    front = pareto_front(jobs, ["a", "b", "c"], ["maximize", "minimize", "maximize"])
    points = {j["job"]: (j["objective_values"]["a"], -j["objective_values"]["b"], j["objective_values"]["c"])
              for j in jobs}
    expected = [n for n, p in points.items() if not any(dominates(list(q), list(p)) for q in points.values())]
    assert front == expected
    for n, m in itertools.product(front, front):
        assert not dominates(list(points[n]), list(points[m]))
