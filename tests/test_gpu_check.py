"""scripts/gpu_check.py: without a GPU it says so, skips every section and trains through the same helpers (slow);
a failing or timed-out section is one line in the JSON and the others still run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def check():
    from cli_helpers import load_script

    return load_script("gpu_check")


def _ctx(check, tmp_path: Path, **args):
    namespace = check.parse_args([f"--workdir={tmp_path}", *args.pop("argv", [])])
    return check.Context(args=namespace, sizes=check.SMOKE_SIZES, workdir=tmp_path, gpus=0, environment={},
                         bench=None, **args)


@pytest.mark.slow
def test_without_a_gpu_every_section_is_skipped_and_the_smoke_trains(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the CPU path, on any machine
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", "--workdir", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no GPU" in proc.stderr
    doc = json.loads(proc.stdout)  # --json: stdout is the document alone
    assert doc["gpu"] is False and doc["message"].startswith("no GPU")
    env_info = doc["environment"]
    assert env_info["gpu_count"] == 0 and env_info["torch"] and env_info["flash_attn"]
    from cli_helpers import load_script

    sections = load_script("gpu_check").SECTIONS
    assert set(doc["sections"]) == set(sections)
    assert all(section["status"] == "skipped: no GPU" for section in doc["sections"].values())
    assert doc["failed"] == [] and doc["smoke"]["status"] == "ok"

    # The smoke's python run.py: a real run dir whose metrics.json holds a finished step and a finite loss.
    run_py = doc["smoke"]["run_py"]
    metrics = json.loads(Path(run_py["metrics_json"]).read_text())
    assert Path(run_py["metrics_json"]).parent.parent == tmp_path / "runs"
    assert metrics["final"]["global_step"] == 1 and math.isfinite(metrics["final"]["train_loss"])
    assert metrics["distributed_type"] == "NO" and run_py["train_loss"] == metrics["final"]["train_loss"]
    # The smoke's bench_train.run_variant: two steps, timed by the step clock.
    variant = doc["smoke"]["run_variant"]
    assert variant["global_step"] == 2 and variant["loss_finite"] and variant["steps_timed"] == 1
    assert variant["steady_samples_per_second"] > 0 and variant["command"].startswith("python run.py model=minilm")


def test_a_failing_section_is_one_line_and_the_next_still_runs(check, tmp_path, monkeypatch):
    def fails(ctx):
        raise SystemExit("variant 'compile_true' failed (exit 1):\nTraceback (most recent call last):\n"
                         "  File ...\nRuntimeError: CUDA out of memory")

    monkeypatch.setitem(check.SECTION_FUNCTIONS, "compile", fails)
    monkeypatch.setitem(check.SECTION_FUNCTIONS, "fsdp", lambda ctx: {"processes": 2})
    ctx = _ctx(check, tmp_path)
    end = time.monotonic() + 600
    failed = check.run_section(ctx, "compile", end)
    assert failed["status"] == "failed"
    assert failed["error"] == "variant 'compile_true' failed (exit 1): ... RuntimeError: CUDA out of memory"
    assert check.run_section(ctx, "fsdp", end)["status"] == "ok" and ctx.deadline == math.inf
    assert check.run_section(ctx, "fsdp", time.monotonic() + 5)["status"].startswith("skipped: time budget")


def test_a_child_past_the_sections_time_is_stopped(check, tmp_path):
    ctx = _ctx(check, tmp_path)
    ctx.deadline = time.monotonic() + 1.0
    tic = time.monotonic()
    with pytest.raises(check.SectionTimeout, match="timed out after"):
        check.run_child(ctx, [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleep.log")
    assert time.monotonic() - tic < 30
    ctx.deadline = time.monotonic() + 60
    with pytest.raises(check.SectionError, match=r"exited 3: error: bad input"):
        check.run_child(ctx, [sys.executable, "-c", "import sys; print('error: bad input'); sys.exit(3)"],
                        tmp_path / "fail.log")
    with pytest.raises(check.SectionTimeout), check.time_limit(0.5):
        subprocess.run([sys.executable, "-c", "import time; time.sleep(60)"])


def test_arguments(check):
    args = check.parse_args(["--sections", "compile, ddp", "--json"])
    assert args.sections == ["compile", "ddp"] and args.json == "-" and args.budget_s is None
    for bad in (["--sections", "nope"], ["--budget-s", "0"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            check.parse_args(bad)
    assert check.last_line("a\nstep 1\rerror: x\n\n") == "error: x"
    assert check.display([sys.executable, str(REPO / "run.py"), "a=b c"]) == "python run.py 'a=b c'"


def test_fsdp_on_one_gpu_runs_one_sharded_process(check, tmp_path, monkeypatch):
    ctx = _ctx(check, tmp_path)
    ctx.gpus = 1
    ran = []
    monkeypatch.setattr(check, "cli_train", lambda ctx, name, overrides: ran.append(overrides) or {"ok": 1})
    result = check.section_fsdp(ctx)  # the framework accepts the config, so the run goes ahead
    assert result == {"processes": 1, "run": {"ok": 1}}
    assert ran[0][-2:] == ["trainer.distributed=fsdp", "trainer.num_processes=1"]
    assert check.section_ddp(ctx) == {"status": "skipped: needs 2+ GPUs (1 visible)"}
