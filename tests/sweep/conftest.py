import pytest
from sweep_helpers import grid_sweep


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """(sweep dir, completed process) of the shared 2x2 grid sweep."""
    return grid_sweep(tmp_path_factory)
