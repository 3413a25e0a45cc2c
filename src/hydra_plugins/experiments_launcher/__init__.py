"""Hydra launchers of the experiments project: ``hydra/launcher=subprocess`` (every job in its own
process, several side by side), ``hydra/launcher=slurm`` / ``slurm_local`` (submitit; every job
runs ``accelerate launch`` over the GPUs of each allocated node) and ``hydra/launcher=ray`` (every job
as a Ray task that runs the subprocess launcher's job process on a node of a Ray cluster)."""
