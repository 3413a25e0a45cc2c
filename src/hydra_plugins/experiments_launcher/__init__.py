"""Hydra launchers of the experiments project: ``hydra/launcher=subprocess`` (every job in its own
process, several side by side) and ``hydra/launcher=slurm`` / ``slurm_local`` (submitit; every job
runs ``accelerate launch`` over the GPUs of each allocated node)."""
