import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweep"))
from sweep_helpers import grid_sweep  # noqa: E402  (shared with tests/sweep: one grid per session)


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """(sweep dir, completed process) of the shared 2x2 grid sweep."""
    return grid_sweep(tmp_path_factory)
