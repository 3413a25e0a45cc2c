"""experiments.train.checkpoints, directly: which HF Trainer checkpoint a resume continues from."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.train.checkpoints import has_checkpoint, last_hf_checkpoint

# what a checkpoint-N folder can hold at the moment a run was killed
STATES = {"whole": json.dumps({"global_step": 1}), "cut": '{"global_step": ', "missing": None, "not a dict": "[1]"}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(0, 10_000), st.sampled_from(sorted(STATES)), max_size=6),
       st.lists(st.sampled_from(["checkpoint-x", "checkpoint-", "step_3", "checkpoint-12.tmp"]), max_size=3))
def test_the_newest_checkpoint_whose_trainer_state_was_written_whole_is_the_one(folders, strays):
    run_dir = Path(tempfile.mkdtemp())
    try:
        for step, state in folders.items():
            folder = run_dir / "checkpoints" / f"checkpoint-{step}"
            folder.mkdir(parents=True)
            if STATES[state] is not None:
                (folder / "trainer_state.json").write_text(STATES[state])
        for name in strays:  # not checkpoints of the Trainer, even with a whole state inside
            (run_dir / "checkpoints" / name).mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints" / name / "trainer_state.json").write_text(STATES["whole"])
        whole = [step for step, state in folders.items() if state == "whole"]
        expected = run_dir / "checkpoints" / f"checkpoint-{max(whole)}" if whole else None
        assert last_hf_checkpoint(run_dir) == expected
        assert has_checkpoint(run_dir, "hf_trainer") is bool(whole)
    finally:
        shutil.rmtree(run_dir)
