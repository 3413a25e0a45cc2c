"""Sweeps: per-job records, the sweep summary (CSV/JSON/table), resume and W&B naming for sweep jobs."""
