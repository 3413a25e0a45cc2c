"""Hydra sweeper of the experiments project: ``hydra/sweeper=optuna`` (selected by ``hparams_search=optuna``),
a search on Optuna's ask/tell API whose logic lives in :mod:`experiments.sweep.search`."""
