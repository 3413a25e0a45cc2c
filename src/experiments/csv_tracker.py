"""The ``csv`` tracker: every logged scalar in the run dir's ``metrics.csv`` (long format: step, name, value),
append-only, and cut back to a checkpoint's step when a run resumes from it."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Optional

from accelerate.tracking import GeneralTracker, on_main_process

from experiments.files import atomic_write

CSV_LOG = "metrics.csv"
CSV_HEADER = "step,name,value\n"


def trim_csv_log(path: Path, last_step: int) -> None:
    """Keep the rows of steps <= ``last_step`` (atomically): the resumed run logs the later ones again."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    # a row cut short by a crash (too few fields, a value that is no number) goes too
    kept = [r for r in rows[1:] if len(r) == 3 and r[0].isdigit() and int(r[0]) <= last_step and _number(r[2])]
    text = io.StringIO()
    csv.writer(text).writerows(kept)
    atomic_write(path, CSV_HEADER + text.getvalue())


def _number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class CSVTracker(GeneralTracker):
    """Long-format ``metrics.csv`` (step, name, value): every logged scalar, append-only."""

    name = "csv"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str):
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / CSV_LOG

    @on_main_process
    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or not self.path.stat().st_size:
            atomic_write(self.path, CSV_HEADER)
        with self.path.open(newline="") as handle:  # rows a resumed run has logged already are not repeated
            self.logged = {(row[0], row[1]) for row in csv.reader(handle) if len(row) == 3}

    @property
    def tracker(self):
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict):
        pass

    @on_main_process
    def log(self, values: dict, step: Optional[int] = None, **kwargs):
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    if (str(step), key) not in self.logged:
                        writer.writerow([step, key, value])
                        self.logged.add((str(step), key))
