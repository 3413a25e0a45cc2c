"""A process that takes a folder lock (``experiments.locks``) for the concurrency tests:

    python lock_worker.py hold <folder> <seconds> <normal|exit2|raise|signal>
        hold the lock, print ``held <pid>``, then end the way asked (``signal``: wait for SIGTERM/SIGINT,
        which experiments.interrupts turns into an exception, as in a run)
    python lock_worker.py turn <folder> <inside dir> <hold ms>
        wait for the lock, check that no live process is inside, stay ``hold ms``, leave; a violation is
        written to ``<inside dir>/violations``
    python lock_worker.py hammer <sweep dir> <worker> <records> <seed>
        write job records and rebuild the sweep summary after each, with random pauses
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from experiments import interrupts, locks
from experiments.errors import ExperimentError


def hold(folder: str, seconds: str, ending: str) -> int:
    interrupts.current().install()
    try:
        locks.hold(Path(folder), "hydra.run.dir")
        print(f"held {os.getpid()}", flush=True)
        if ending == "signal":
            while True:
                time.sleep(0.05)
        time.sleep(float(seconds))
        if ending == "exit2":
            sys.exit(2)
        if ending == "raise":
            raise RuntimeError("a bug")
        return 0
    except ExperimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def turn(folder: str, inside: str, hold_ms: str) -> int:
    room = Path(inside)
    locks.hold(Path(folder), "hydra.run.dir", wait_s=60)
    others = [p for p in room.glob("in.*") if int(p.suffix[1:]) != os.getpid()]
    live = [p.name for p in others if _alive(int(p.suffix[1:]))]
    if live:
        with open(room / "violations", "a") as handle:
            handle.write(f"{os.getpid()} entered while {live} inside\n")
    for p in others:  # left by a holder that was killed inside
        p.unlink(missing_ok=True)
    mine = room / f"in.{os.getpid()}"
    mine.write_text("")
    print(f"inside {os.getpid()}", flush=True)
    time.sleep(int(hold_ms) / 1000)
    mine.unlink()
    with open(room / "done", "a") as handle:
        handle.write(f"{os.getpid()}\n")
    locks.release(Path(folder))
    return 0


def hammer(sweep_dir: str, worker: str, count: str, seed: str) -> int:
    """Each summary this worker reads back holds every job it recorded so far (a summary built from fewer
    records never replaces a newer one), and both files parse."""
    import csv
    import json

    from experiments.sweep import records, summary

    rng = random.Random(int(seed))
    original = summary.write_summary

    def slow_write(result, folder):  # widen the window between reading the records and writing the files
        time.sleep(rng.uniform(0, 0.1))
        return original(result, folder)

    summary.write_summary = slow_write
    sweep, mine = Path(sweep_dir), set()
    for i in range(int(count)):
        num = int(worker) * 1000 + i
        records.write(sweep / str(num), _record(num, sweep))
        mine.add(num)
        summary.summarize_dir(sweep, objective="eval_accuracy")
        seen = {j["job"] for j in json.loads((sweep / summary.SUMMARY_JSON).read_text())["jobs"]}
        with (sweep / summary.SUMMARY_CSV).open() as handle:
            seen_csv = {int(row["job"]) for row in csv.DictReader(handle)}
        if not mine <= seen or not mine <= seen_csv:
            print(f"worker {worker}: rows lost: {sorted(mine - seen)} (json), {sorted(mine - seen_csv)} (csv)",
                  file=sys.stderr)
            return 1
    return 0


def _record(num: int, sweep: Path) -> dict:
    from experiments.sweep import records

    return records.build(job=num, overrides=[f"trainer.seed={num}"], status=records.FINISHED, run_dir=sweep / str(num),
                         sweep_dir=sweep, sweep="hammer", started_at=time.time(), finished_at=time.time(),
                         objective="eval_accuracy", objective_value=num / 1e6)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    sys.exit({"hold": hold, "turn": turn, "hammer": hammer}[mode](*args))
