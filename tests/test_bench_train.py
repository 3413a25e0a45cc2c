"""scripts/bench_train.py: its smallest configuration runs end to end and reports positive figures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_train.py"


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_bad_section_is_a_usage_error():
    proc = _run("--sections", "nope", timeout=60)
    assert proc.returncode == 2
    assert "unknown ['nope']" in proc.stderr


@pytest.mark.slow
def test_smallest_loop_vs_hf_run(tmp_path: Path, shared_data: Path):
    out = tmp_path / "bench.json"
    proc = _run("--steps", "2", "--sections", "loop_vs_hf", "--max-train-samples", "64", "--max-eval-samples", "32",
                "--threads", "2", "--mirror", str(shared_data), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The printed table: both rows, the thread count and the ratio line.
    assert "torch.set_num_threads(2)" in proc.stdout
    assert "accelerate loop, dynamic, fp32" in proc.stdout
    assert "HF Trainer, dynamic, fp32" in proc.stdout
    assert "ours/HF" in proc.stdout

    result = json.loads(out.read_text())
    assert result["meta"]["dataset"] == "mrpc"
    assert result["meta"]["worker_threads"] == [2]
    section = result["sections"]["loop_vs_hf"]
    assert [row["name"] for row in section["rows"]] == ["ours", "hf"]
    for row in section["rows"]:
        assert row["steady_samples_per_second"] > 0
        assert row["reported_samples_per_second"] > 0
        assert 0.0 <= row["eval_accuracy"] <= 1.0
        run = row["runs"][0]
        assert run["steady"]["steps_seen"] == 2 and run["steady"]["samples"] == 32  # step 2 of batch 32
    assert section["ratio"] > 0
    # The loop's own FLOP count equals 6 x non-embedding params x the tokens the clock counted.
    assert section["rows"][0]["flop_count_check"] == pytest.approx(1.0, rel=1e-6)
