"""Shared by tests: the repo root, ../shared/data, and running the CLI as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


def run_cli(*overrides: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600,
            multirun: bool = False) -> subprocess.CompletedProcess:
    """``python run.py <overrides>`` in a subprocess, as a user would type it."""
    cmd = [sys.executable, str(REPO / "run.py")] + (["-m"] if multirun else []) + list(overrides)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def load_script(name: str):
    """A script of scripts/ imported as a module (its functions tested without running its main)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kill_when(marker: Path, *overrides: str, env: dict | None = None, timeout: int = 600) -> None:
    """``python run.py <overrides>``, SIGKILLed as soon as ``marker`` exists (as when its machine goes away); fails if
    the run ended by itself first."""
    import signal
    import time

    cmd = [sys.executable, str(REPO / "run.py"), *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, **(env or {})), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before {marker} appeared:\n{err[-3000:]}"


def assert_same_run(resumed: dict, reference: dict, final_keys, rel: float = 1e-5, abs_: float = 1e-6) -> None:
    """Two run records (metrics.json): every train-log value at every step, and the final metrics ``final_keys``,
    equal within ``rel`` (or ``abs_`` for values near 0)."""
    from pytest import approx

    assert [row["step"] for row in resumed["train_log"]] == [row["step"] for row in reference["train_log"]]
    for got, want in zip(resumed["train_log"], reference["train_log"]):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == approx(want[key], rel=rel, abs=abs_), (want["step"], key)
    assert [row["step"] for row in resumed["history"]] == [row["step"] for row in reference["history"]]
    for key in final_keys:
        assert resumed["final"][key] == approx(reference["final"][key], rel=rel, abs=abs_), key


def write_preference_pairs(shared_data: Path, folder: Path, train: int = 64, held_out: int = 16, seen: bool = False) -> Path:
    """Multi30k en -> de: the reference translation chosen, another sentence's translation rejected; ``seen``:
    the validation rows are the first train rows (what a tiny random model can learn in a few steps)."""
    english = (shared_data / "translation" / "multi30k" / "val.en").read_text(encoding="utf-8").splitlines()
    german = (shared_data / "translation" / "multi30k" / "val.de").read_text(encoding="utf-8").splitlines()
    folder.mkdir(parents=True, exist_ok=True)
    evaluation = range(held_out) if seen else range(train, train + held_out)
    for split, rows in (("train", range(train)), ("validation", evaluation)):
        lines = [json.dumps({"prompt": english[i], "chosen": german[i], "rejected": german[(i + 7) % len(german)]},
                            ensure_ascii=False) for i in rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
