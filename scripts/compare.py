"""Side-by-side comparison of runs: `python scripts/compare.py <run or sweep dirs...> [--rows] [--all]`; two runs
with per-example records are also compared example by example (`--paired`, `--json`: docs/comparing.md)."""
import sys

from experiments.report.compare import main

if __name__ == "__main__":
    sys.exit(main())
