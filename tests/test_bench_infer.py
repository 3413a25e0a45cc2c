"""scripts/bench_infer.py: the ratios it prints, the bf16-vs-float32 label agreement, and one small run end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_infer.py"


@pytest.fixture(scope="module")
def bench():
    from cli_helpers import load_script

    return load_script("bench_infer")


def test_ratios_compare_our_defaults_and_our_paths_with_the_plain_call(bench):
    row = {"ours/defaults": 60.0, "ours/manual": 24.0, "ours/pipeline": 30.0, "pipeline(bs=32)": 20.0,
           "one-by-one": 10.0}
    assert bench.ratios(row, 32) == {"defaults/plain": 3.0, "same/plain": 1.5, "defaults/1-by-1": 6.0}
    no_pipeline = {"ours/defaults": 9.0, "ours/manual": 6.0, "one-by-one": 3.0}
    assert bench.ratios(no_pipeline, 32) == {"defaults/plain": None, "same/plain": None, "defaults/1-by-1": 3.0}


def test_label_agreement_counts_equal_labels_of_auto_and_float32_weights(bench, tiny_models, shared_data):
    import torch

    from experiments.hardware import inference_dtype

    sentences = bench._sentences(Path(shared_data), 24)
    result = bench.label_agreement(tiny_models["classifier"], sentences, threads=1)
    assert result["n"] == 24 and 0 <= result["agree"] <= 24
    assert result["agreement"] == pytest.approx(result["agree"] / 24)
    assert result["dtype"] == inference_dtype("auto", torch.device("cpu"))


@pytest.mark.slow
def test_one_task_end_to_end_writes_its_rows_and_ratios(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--tasks", "text-classification", "--n", "8",
                             "--repeats", "1", "--threads", "1", "--json", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("device=")
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["task"] == "text-classification" and row["n"] == 8
    assert all(row[c] > 0 for c in ("ours/defaults", "ours/manual", "ours/pipeline", "pipeline(bs=32)", "one-by-one"))
    assert row["ratios"]["defaults/plain"] == pytest.approx(row["ours/defaults"] / row["pipeline(bs=32)"])
    assert data["device"] and data["agreement"] is None


def test_check_names_each_task_below_its_target(bench):
    rows = [{"task": "fill-mask", "ours/defaults": 190.0, "ours/manual": 100.0, "pipeline(bs=32)": 100.0,
             "one-by-one": 10.0},
            {"task": "text-generation", "ours/defaults": 12.0, "ours/manual": 10.0, "pipeline(bs=32)": 10.0,
             "one-by-one": 1.0},
            {"task": "summarization", "ours/defaults": 1.0, "ours/manual": 1.0, "one-by-one": 1.0}]
    assert bench.check_targets(rows, 32, {"agreement": 1.0}) == ["text-generation: defaults/plain 1.2 < 1.3"]
    rows[0]["ours/defaults"] = 170.0
    failures = bench.check_targets(rows, 32, {"agreement": 0.99})
    assert [f.split(":")[0] for f in failures] == ["fill-mask", "text-generation", "label agreement 0.9900 < 0.995"]
