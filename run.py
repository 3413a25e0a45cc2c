"""Entry point: `python run.py model=bert dataset=mrpc` (see README)."""
from experiments.cli import main

if __name__ == "__main__":
    main()
