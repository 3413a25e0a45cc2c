"""Where a sweep job runs, as every launcher and the sweeper place it."""
from pathlib import Path
from typing import List

from omegaconf import DictConfig, OmegaConf, open_dict


def job_run_dir(config_loader, primary: DictConfig, overrides: List[str], num: int) -> Path:
    """``<hydra.sweep.dir>/<hydra.sweep.subdir>`` of job ``num``'s composed config (``<num>`` when the
    subdir cannot be resolved)."""
    sweep_dir = Path(str(primary.hydra.sweep.dir))
    try:
        config = config_loader.load_sweep_config(primary, list(overrides))
        with open_dict(config):
            config.hydra.job.num, config.hydra.job.id = num, str(num)
        return sweep_dir / str(OmegaConf.select(config, "hydra.sweep.subdir"))
    except Exception:
        return sweep_dir / str(num)
