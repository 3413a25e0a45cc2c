"""Cases for inject.py: a run of a tiny model whose life has every kind of write and point (start-up, steps,
evaluations, checkpoints, best/, last/, metrics.json), run many times under faults in one batch (one start-up,
a forked child per case), then checked: one line, the earlier results intact, a resume to the same result."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from faults import TINY

HERE = Path(__file__).parent
# 6 steps of 4 rows; a checkpoint every 2 steps (all 3 kept), an evaluation every 3, best/ and last/ saved.
STEPS = [*TINY, "model=local", "dataset.max_train_samples=32", "trainer.per_device_batch_size=4",
         "trainer.max_steps=6", "trainer.save_steps=2", "trainer.save_total_limit=3", "trainer.eval_steps=3",
         "trainer.save_model=true", "trainer.mixed_precision=no"]
RESUME = "trainer.resume=true"


class Case:
    """One run in a batch: its folder holds ``run/`` (the run dir), ``stdout``, ``stderr`` and the event log."""

    def __init__(self, folder: Path, argv: List[str], run_dir: Path, action: str = "count", at: int = 0,
                 match: str = "", root: Optional[Path] = None):
        self.folder, self.argv, self.run_dir = Path(folder), list(argv), Path(run_dir)
        self.env = {"INJECT_ACTION": action, "INJECT_AT": str(at), "INJECT_MATCH": match,
                    "INJECT_ROOT": str(root or folder), "INJECT_LOG": str(Path(folder) / "events.jsonl")}
        self.rc: Optional[int] = None
        self.kept = self.folder / "kept"  # the run dir as this case left it (a later case may resume it)

    @property
    def stderr(self) -> str:
        path = self.folder / "stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def result(self) -> subprocess.CompletedProcess:
        out = self.folder / "stdout"
        return subprocess.CompletedProcess(self.argv, self.rc, out.read_text(errors="replace") if out.exists() else "",
                                           self.stderr)

    def events(self) -> List[dict]:
        path = Path(self.env["INJECT_LOG"])
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_case(folder: Path, *overrides: str, run_dir: Optional[Path] = None, **plan) -> Case:
    """A single run into ``run_dir`` (default ``<folder>/run``; a later case of a batch may resume it)."""
    run_dir = Path(run_dir or Path(folder) / "run")
    return Case(folder, [*STEPS, *overrides, f"hydra.run.dir={run_dir}"], run_dir, root=run_dir.parent, **plan)


def run_batch(cases: List[Case], scratch: Path, timeout: int = 900) -> List[Case]:
    """Run ``cases`` in order, each in a child forked from one process that imported everything once."""
    scratch.mkdir(parents=True, exist_ok=True)
    plan = [{"argv": c.argv, "cwd": str(scratch), "out": str(c.folder), "env": c.env, "run_dir": str(c.run_dir),
             "keep": str(c.kept)} for c in cases]
    plan_file, results_file = scratch / "plan.json", scratch / "results.json"
    plan_file.write_text(json.dumps(plan))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, str(HERE / "inject.py"), "--batch", str(plan_file), str(results_file)],
                          cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 and results_file.exists(), done.stderr[-3000:]
    for case, result in zip(cases, json.loads(results_file.read_text())):
        case.rc, case.wall_s = result["rc"], result["wall_s"]
    return cases


def writes(events: List[dict]) -> List[dict]:
    """The events that write a file (what a full disk can fail), not calls or removals."""
    return [e for e in events if not e["op"].startswith(("call:", "rmtree"))]


def kind(event: dict) -> str:
    """An event with the step numbers and process ids taken out: ``torch.save checkpoints/step_N/optimizer.bin``."""
    path = re.sub(r"step_\d+", "step_N", re.sub(r"\.\d+\.tmp$", ".tmp", event["path"].split("/run/")[-1]))
    return f"{event['op']} {path}" if event["path"] else event["op"]


def first_of_each_kind(events: List[dict]) -> List[dict]:
    seen, picked = set(), []
    for event in events:
        if kind(event) not in seen:
            seen.add(kind(event))
            picked.append(event)
    return picked


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def outcome(run_dir: Path) -> Dict[str, object]:
    """What a finished run must agree on with an uninterrupted one: final metrics (but timings), the train
    losses, the final weights."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    final = {k: round(v, 5) for k, v in metrics["final"].items()
             if isinstance(v, float) and "runtime" not in k and "per_second" not in k}
    return {"final": final, "steps": metrics["final"]["global_step"],
            "train_loss": [round(r["train_loss"], 5) for r in metrics["train_log"]],
            "last": sha(run_dir / "last" / "model.safetensors")}


def duplicate_rows(run_dir: Path) -> list:
    import csv
    from collections import Counter

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return [key for key, n in Counter((r["step"], r["name"]) for r in rows).items() if n > 1]
