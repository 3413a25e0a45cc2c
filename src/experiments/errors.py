"""User-facing errors: printed as one line (``error: …``) with a non-zero exit, never a traceback."""


class ExperimentError(Exception):
    """Bad input a user can fix: an unknown option, a missing file, a malformed row."""

    exit_code = 2


class ResolutionError(ExperimentError):
    """A model or dataset could be found in none of the places tried."""


class DataError(ExperimentError):
    """Rows or files that cannot be read as the config says."""


class TrainingDiverged(ExperimentError):
    """The loss became NaN or infinite: the run stops (exit 3) instead of training and saving garbage."""

    exit_code = 3
