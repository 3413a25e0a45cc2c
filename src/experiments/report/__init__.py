"""Looking at finished runs: run discovery, the sweep HTML report, the TensorBoard hparams export and
dashboard, and the terminal comparison of runs."""
