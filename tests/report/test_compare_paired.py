"""``compare.py RUN_A RUN_B``: the paired test of two runs on the same eval examples. Its values, bootstrap CIs
and p-values equal an independent numpy / sklearn / statsmodels computation on the same rows (fixed seeds, within
Monte Carlo error); runs on different examples, or without per-example records, are refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.metrics.examples import ExampleRecords, write_records
from experiments.report.compare import main

N = 300
METRICS = {"accuracy": {"statistic": "mean_score", "higher_is_better": True},
           "f1": {"statistic": "binary_f1", "higher_is_better": True},
           "loss": {"statistic": "mean_score", "higher_is_better": False}}


def labels(seed: int, accuracy: float, n: int = N):
    rng = np.random.default_rng(seed)
    references = np.random.default_rng(99).integers(0, 2, n)  # the same eval set in every run
    predictions = np.where(rng.random(n) < accuracy, references, 1 - references)
    return predictions, references


def make_run(path, predictions, references, ids=None, eval_set="toy:validation", records=True):
    """A run dir as training leaves it: config.yaml, metrics.json and (optionally) eval_predictions.jsonl."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"mode: train\ntrainer:\n  seed: {path.name}\n")
    ids = ids or [str(i) for i in range(len(predictions))]
    losses = np.abs(predictions - references) + 0.1
    rows = ({"id": example, "prediction": int(p), "reference": int(r),
             "stats": {"accuracy": [float(p == r), 1], "f1": [int(p == 1 and r == 1), int(p == 1 and r == 0),
                                                             int(p == 0 and r == 1)], "loss": [float(x), 1]}}
            for example, p, r, x in zip(ids, predictions, references, losses))
    final = {"eval_accuracy": float(np.mean(predictions == references))}
    payload = {"mode": "train", "model": "toy", "final": final}
    if records:
        payload["eval_predictions"] = write_records(path, ExampleRecords(eval_set, METRICS, rows, prefix="eval_"))
    (path / "metrics.json").write_text(json.dumps(payload))
    return path


@pytest.fixture
def two_runs(tmp_path):
    (pa, ref), (pb, _) = labels(1, 0.78), labels(2, 0.86)
    return make_run(tmp_path / "a", pa, ref), make_run(tmp_path / "b", pb, ref), (pa, pb, ref)


def f1_of(predictions, references):
    tp = ((predictions == 1) & (references == 1)).sum(-1)
    return 2 * tp / (2 * tp + ((predictions == 1) & (references == 0)).sum(-1) + ((predictions == 0) & (references == 1)).sum(-1))


def test_json_values_cis_and_p_values_equal_an_independent_computation(two_runs, capsys):
    from sklearn.metrics import accuracy_score, f1_score
    from statsmodels.stats.contingency_tables import mcnemar

    a, b, (pa, pb, ref) = two_runs
    assert main([str(a), str(b), "--json", "--seed", "3"]) == 0
    result = json.loads(capsys.readouterr().out)["metrics"]
    accuracy, f1 = result["accuracy"], result["f1"]
    assert set(accuracy) >= {"a", "b", "difference", "ci95", "p_value", "test", "n_examples"}
    assert accuracy["a"] == pytest.approx(accuracy_score(ref, pa)) and f1["b"] == pytest.approx(f1_score(ref, pb))
    assert f1["difference"] == pytest.approx(f1_score(ref, pb) - f1_score(ref, pa)) and f1["n_examples"] == N

    rng = np.random.default_rng(2024)  # the paired bootstrap written out: resample examples, recompute F1
    rows = rng.integers(0, N, (20_000, N))
    boot_acc = (pb[rows] == ref[rows]).mean(1) - (pa[rows] == ref[rows]).mean(1)
    boot_f1 = f1_of(pb[rows], ref[rows]) - f1_of(pa[rows], ref[rows])
    assert accuracy["ci95"] == pytest.approx(list(np.percentile(boot_acc, [2.5, 97.5])), abs=0.008)
    assert f1["ci95"] == pytest.approx(list(np.percentile(boot_f1, [2.5, 97.5])), abs=0.01)

    swap = rng.random((20_000, N)) < 0.5  # approximate randomization: swap A's and B's output per example
    shuffled_a, shuffled_b = np.where(swap, pb, pa), np.where(swap, pa, pb)
    for name, observed, statistic in (("accuracy", (pb == ref).mean() - (pa == ref).mean(),
                                       (shuffled_b == ref).mean(1) - (shuffled_a == ref).mean(1)),
                                      ("f1", f1_score(ref, pb) - f1_score(ref, pa),
                                       f1_of(shuffled_b, ref) - f1_of(shuffled_a, ref))):
        p_loop = (np.sum(np.abs(statistic) >= abs(observed) - 1e-12) + 1) / (len(statistic) + 1)
        assert result[name]["p_value"] == pytest.approx(p_loop, abs=0.02), name

    right_a, right_b = pa == ref, pb == ref
    table = [[np.sum(right_a & right_b), np.sum(right_a & ~right_b)], [np.sum(~right_a & right_b),
                                                                        np.sum(~right_a & ~right_b)]]
    assert accuracy["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert accuracy["verdict"] == "B is better" and result["loss"]["verdict"] == "B is better"  # lower loss


def test_text_report_shows_each_metric_with_its_verdict(two_runs, capsys):
    a, b, _ = two_runs
    assert main([str(a), str(b), "--resamples", "2000"]) == 0
    out = capsys.readouterr().out
    assert "paired test, A = a, B = b, on the same 300 examples of toy:validation" in out
    paired = out[out.index("paired test"):]
    for name in ("accuracy", "f1", "loss"):
        assert name in paired
    assert "B is better" in paired and "McNemar p" in paired


def test_the_same_run_twice_is_not_distinguishable(two_runs, tmp_path, capsys):
    a, _, (pa, _, ref) = two_runs
    copy = make_run(tmp_path / "a_again", pa, ref)
    assert main([str(a), str(copy), "--json", "--resamples", "1000"]) == 0
    result = json.loads(capsys.readouterr().out)["metrics"]
    assert {r["verdict"] for r in result.values()} == {"not distinguishable at 95 %"}
    assert result["accuracy"]["ci95"] == [0.0, 0.0] and result["accuracy"]["p_value"] == 1.0


def test_rows_in_another_order_pair_by_id(two_runs, tmp_path, capsys):
    a, _, (pa, pb, ref) = two_runs
    order = np.random.default_rng(5).permutation(N)
    shuffled = make_run(tmp_path / "shuffled", pb[order], ref[order], ids=[str(i) for i in order])
    assert main([str(a), str(shuffled), "--json", "--resamples", "500"]) == 0
    result = json.loads(capsys.readouterr().out)["metrics"]
    assert result["accuracy"]["difference"] == pytest.approx((pb == ref).mean() - (pa == ref).mean())


def test_runs_on_different_examples_are_refused_in_one_line(two_runs, tmp_path, capsys):
    a, _, (pa, pb, ref) = two_runs
    other = make_run(tmp_path / "other", pb, ref, ids=[str(i) for i in range(5, N + 5)])
    assert main([str(a), str(other), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "different examples" in err and "ids only in A: 0, 1, 2 (+2 more); only in B: 300, 301, 302" in err
    elsewhere = make_run(tmp_path / "elsewhere", pb, ref, eval_set="toy:test")
    assert main([str(a), str(elsewhere), "--paired"]) == 2
    assert "different eval sets" in capsys.readouterr().err
    # not asked for: the side-by-side table stands, the reason is one line
    assert main([str(a), str(other)]) == 0
    captured = capsys.readouterr()
    assert "eval_accuracy" in captured.out and "no paired test: " in captured.err


def test_runs_without_records_are_refused_saying_how_to_make_them(two_runs, tmp_path, capsys):
    a, _, (pa, pb, ref) = two_runs
    bare = make_run(tmp_path / "bare", pb, ref, records=False)
    assert main([str(a), str(bare), "--paired"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no per-example records" in err and "mode=infer" in err and "best" in err
    assert main([str(a), str(bare)]) == 0  # without --paired: only the table (one run has no records)
    assert "paired test" not in capsys.readouterr().out
    assert main([str(a), "--json"]) == 2
    assert "exactly two runs" in capsys.readouterr().err


def test_per_class_statistics_align_when_runs_saw_different_classes(tmp_path, capsys):
    from sklearn.metrics import f1_score

    spec = {"f1": {"statistic": "macro_f1", "higher_is_better": True}}
    references = ["x", "y", "z", "x", "y", "z", "x", "y"]
    runs = {}
    for name, predictions in (("a", ["x", "y", "y", "x", "y", "y", "x", "y"]),
                              ("b", ["x", "y", "z", "x", "y", "z", "x", "w"])):
        classes = sorted(set(predictions) | set(references))
        path = tmp_path / name
        path.mkdir()
        (path / "config.yaml").write_text(f"mode: infer\nname: {name}\n")
        rows = [{"id": str(i), "stats": {"f1": [int(x) for c in classes for x in (p == c and r == c, p == c and r != c,
                                                                                  p != c and r == c)]}}
                for i, (p, r) in enumerate(zip(predictions, references))]
        entry = write_records(path, ExampleRecords("toy:validation", {"f1": {**spec["f1"], "classes": classes}}, rows))
        (path / "metrics.json").write_text(json.dumps({"mode": "infer", "model": "toy", "final": {},
                                                       "eval_predictions": entry}))
        runs[name] = (path, predictions)
    assert main([str(runs["a"][0]), str(runs["b"][0]), "--json", "--resamples", "200"]) == 0
    f1 = json.loads(capsys.readouterr().out)["metrics"]["f1"]
    assert f1["a"] == pytest.approx(f1_score(references, runs["a"][1], average="macro", zero_division=0))
    assert f1["b"] == pytest.approx(f1_score(references, runs["b"][1], average="macro", zero_division=0))


@pytest.mark.parametrize("value", ["0", "-5", "ten", "99"])
def test_too_few_resamples_is_one_line(two_runs, value, capsys):
    a, b, _ = two_runs
    with pytest.raises(SystemExit) as stopped:
        main([str(a), str(b), "--resamples", value])
    assert stopped.value.code == 2 and "--resamples" in capsys.readouterr().err
