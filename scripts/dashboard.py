"""Local dashboard over outputs/ and multirun/: `python scripts/dashboard.py [folders] [--port 6006]`."""
import sys

from experiments.report.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
