"""Kill a run mid-epoch with SIGKILL, resume it, and get the same final metrics as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

# 24 optimizer steps in one epoch, a checkpoint every 4; dropout stays on, so RNG state must be restored too.
RUN = ["dataset.max_train_samples=192", "dataset.max_eval_samples=48", "tokenizer.max_length=32",
       "trainer.epochs=1", "trainer.per_device_batch_size=8", "trainer.save_steps=4", "trainer.lr=1e-4",
       "trainer.save_total_limit=10", "trainer.log_every_n_steps=1", "trainer.save_model=false", "logger=csv"]


def _start(run_dir, *extra):
    from cli_helpers import REPO

    cmd = [sys.executable, str(REPO / "run.py"), *RUN, f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


@pytest.mark.parametrize("peft", ["none", "lora"])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, peft):
    """Full fine-tuning, and LoRA (adapter weights, their dropout RNG and the new head's optimizer state)."""
    peft_overrides = ["peft=lora", "trainer.lr=1e-3"] if peft == "lora" else []
    reference = _start(tmp_path / "reference", *peft_overrides)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]

    killed = _start(tmp_path / "killed", *peft_overrides)
    target = tmp_path / "killed" / "checkpoints" / "step_8" / "loop_state.json"
    deadline = time.time() + 600
    while not target.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    partial = json.loads((tmp_path / "killed" / "metrics.json").read_text()) \
        if (tmp_path / "killed" / "metrics.json").exists() else {"final": {}}
    assert not partial["final"], "the run had already finished"

    resumed = _start(tmp_path / "killed", *peft_overrides, "trainer.resume=true")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]

    ref = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    res = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert res["resumed_from"] and "step_" in res["resumed_from"] and res["peft"] == peft
    assert int(res["resumed_from"].rsplit("_", 1)[1]) < 24
    for key in ("eval_loss", "eval_accuracy", "eval_f1_macro", "train_loss"):
        assert res["final"][key] == pytest.approx(ref["final"][key], rel=1e-5, abs=1e-6), key
    assert res["final"]["global_step"] == ref["final"]["global_step"] == 24
    assert [r["train_loss"] for r in res["train_log"]] == pytest.approx([r["train_loss"] for r in ref["train_log"]],
                                                                        rel=1e-5)


def test_resume_without_checkpoint_is_one_line_error(cli, tmp_path):
    result = cli(*RUN, "trainer.resume=true", f"hydra.run.dir={tmp_path}/fresh")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: trainer.resume=true but")
    assert not (tmp_path / "fresh").exists()
