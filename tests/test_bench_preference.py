"""scripts/bench_preference.py: the side-by-side rates and ratios, and both methods end to end on a tiny model
(the framework's run, then TRL's trainers built by hand with the settings that run recorded)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    from cli_helpers import load_script

    return load_script("bench_preference")


def test_ratios_divide_our_rates_by_trls(bench):
    result = bench.compare({"steps": 4, "seconds": 2.0, "tokens": 800}, {"steps": 4, "seconds": 4.0, "tokens": 1000})
    assert result["ours"]["steps_per_s"] == 2.0 and result["trl"]["tokens_per_s"] == 250.0
    assert result["ratio"] == {"steps_per_s": 2.0, "tokens_per_s": 1.6}
    uncounted = bench.compare({"steps": 4, "seconds": 2.0, "tokens": None}, {"steps": 4, "seconds": 4.0, "tokens": 10})
    assert uncounted["ratio"]["tokens_per_s"] is None and uncounted["ratio"]["steps_per_s"] == 2.0


def test_the_chrf_reward_scores_text_and_chat_completions_alike(bench):
    plain = bench.chrf_reward(["p"], ["Ein Hund läuft."], reference=["Ein Hund läuft."])
    chat = bench.chrf_reward(["p"], [[{"role": "assistant", "content": "Ein Hund läuft."}]], reference=["Ein Hund läuft."])
    assert plain == chat == [1.0]


@pytest.mark.slow
def test_both_methods_side_by_side_on_a_tiny_model(tiny_models, shared_data, tmp_path):
    from cli_helpers import write_preference_pairs

    pairs = write_preference_pairs(shared_data, tmp_path / "pairs", train=16, held_out=8)
    extra = ["model=local", f"model.name_or_path={tiny_models['gpt2']}", f"paths.mirror={shared_data}",
             "peft.target_modules=[c_attn]", "trainer.mixed_precision=no", "trainer.per_device_batch_size=4",
             "task.max_new_tokens=6", "task.max_length=48", "dataset.max_train_samples=16"]
    dpo = [f"dataset.data_files.train={pairs / 'train.jsonl'}", f"dataset.data_files.validation={pairs / 'validation.jsonl'}"]
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_preference.py"), "--steps", "2",
                           "--json", str(out), "--extra", *extra, "--extra-dpo", *dpo], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"dpo", "grpo"}
    for method, data in results.items():
        assert data["ours"]["steps"] == data["trl"]["steps"] == 2, method
        assert data["ratio"]["steps_per_s"] > 0 and data["ratio"]["tokens_per_s"] > 0, (method, data)
    assert "ours/TRL" in proc.stdout
