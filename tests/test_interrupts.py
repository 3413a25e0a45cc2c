"""experiments.interrupts: the stop of a run by a signal, as errors that cross processes."""
from __future__ import annotations

import pickle

from experiments.interrupts import Interrupted


def test_an_interrupted_error_survives_pickling_with_its_signal_and_message():
    """A sweep job's result (its error included) is pickled by the launcher that ran it."""
    import cloudpickle

    error = Interrupted.after_checkpoint(15, 3, "/runs/a")
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        copy = loads(dumps(error))
        assert (copy.signum, copy.exit_code, str(copy)) == (15, 143, str(error))
        assert "at step 3: checkpoint saved" in str(copy)
