"""Side-by-side comparison of runs: `python scripts/compare.py <run or sweep dirs...> [--rows] [--all]`."""
import sys

from experiments.report.compare import main

if __name__ == "__main__":
    sys.exit(main())
