#!/usr/bin/env python
"""Build a preference data set the way self-play fine-tuning does (SPIN, Chen et al. 2024): for each source
sentence, the reference answer is ``chosen`` and the base model's own answer is ``rejected``.

No preference data ships offline, so this builds one from Multi30k en -> de (the mirror's ``translation/multi30k``):
the base model translates every source sentence through ``python run.py mode=infer task=translation`` (greedy, so
the same model and data give the same file), and each row keeps the English sentence as ``prompt``, the reference
German as ``chosen`` and the model's German as ``rejected``. Rows where the model already gives the reference (or
nothing) are left out: they hold no preference. Train rows come from the validation split, held-out rows from the
test split, as in ``experiment=multi30k_smollm2_lora``.

The files land in the data cache the preset reads (``$EXPERIMENTS_CACHE``, default ``~/.cache/hf-experiments``):
``preferences/multi30k_smollm2/{train,validation}.jsonl`` and a ``manifest.json`` with the command, the counts and
the files' sha256. An existing folder is left alone unless ``--force``; the new one replaces it whole.

    python scripts/build_preferences.py                      # all 1,014 validation + 200 test sentences, ~6 min
    python scripts/build_preferences.py --train 200 --held-out 50
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
NAME = "multi30k_smollm2"


def cache_root() -> Path:
    return Path(os.environ.get("EXPERIMENTS_CACHE") or Path.home() / ".cache" / "hf-experiments")


def translate(split: str, limit: Optional[int], args: argparse.Namespace, workdir: Path) -> List[Dict[str, Any]]:
    """The base model's translations of ``split`` (predictions.jsonl rows), through mode=infer."""
    run_dir = workdir / split
    model = ["model=local", f"model.name_or_path={args.model_path}"] if args.model_path else [f"model={args.model}"]
    command = [sys.executable, str(REPO / "run.py"), "mode=infer", "task=translation", *model,
               "dataset=multi30k", f"paths.mirror={args.mirror}", f"inference.split={split}",
               f"inference.max_samples={limit if limit else 'null'}", f"task.max_new_tokens={args.max_new_tokens}",
               "inference.progress=false", "logger=none", f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(command, cwd=str(REPO), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"translating {split} failed (exit {proc.returncode}): {last}")
    lines = (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def output_text(output: Any) -> str:
    """The generated text of one predictions.jsonl output (``[{"translation_text": ...}]``)."""
    while isinstance(output, list) and output:
        output = output[0]
    if isinstance(output, dict):
        output = next(iter(output.values()), "")
    return str(output or "").strip()


def preference_rows(predictions: List[Dict[str, Any]]) -> List[Dict[str, str]]:
    """prompt = source, chosen = reference, rejected = the model's answer; rows without a preference left out."""
    rows = []
    for row in predictions:
        rejected, chosen = output_text(row["output"]), str(row.get("reference") or "").strip()
        if rejected and chosen and rejected != chosen:
            rows.append({"id": str(row["id"]), "prompt": str(row["input"]), "chosen": chosen, "rejected": rejected})
    return rows


def write_set(target: Path, splits: Dict[str, List[Dict[str, str]]], manifest: Dict[str, Any]) -> None:
    """Write the split files and the manifest into a new folder, then move it into place whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    for split, rows in splits.items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (staging / f"{split}.jsonl").write_text(text, encoding="utf-8")
        manifest["files"][f"{split}.jsonl"] = {"rows": len(rows),
                                              "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        target.rename(old)
        staging.rename(target)
        import shutil

        shutil.rmtree(old)
    else:
        staging.rename(target)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", default=os.environ.get("EXPERIMENTS_MIRROR") or str(REPO.parent / "shared" / "data"))
    parser.add_argument("--model", default="smollm2", help="conf/model option that answers (the base model)")
    parser.add_argument("--model-path", default=None, help="a local model folder instead of --model")
    parser.add_argument("--train", type=int, default=None, help="validation sentences to use (default: all)")
    parser.add_argument("--held-out", type=int, default=200, help="test sentences to use")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=None, help=f"default: <cache>/preferences/{NAME}")
    parser.add_argument("--force", action="store_true", help="replace an existing set")
    args = parser.parse_args(argv)
    target = args.out or cache_root() / "preferences" / NAME
    if target.exists() and not args.force:
        print(f"{target} exists (built {json.loads((target / 'manifest.json').read_text()).get('built', '?')}); "
              f"--force rebuilds it")
        return 0
    with tempfile.TemporaryDirectory(prefix="build_preferences-") as tmp:
        splits = {"train": preference_rows(translate("validation", args.train, args, Path(tmp))),
                  "validation": preference_rows(translate("test", args.held_out, args, Path(tmp)))}
    manifest = {"built": __import__("time").strftime("%Y-%m-%dT%H:%M:%S"), "method": "self-play: chosen = reference, "
                "rejected = the base model's greedy translation", "model": args.model_path or args.model, "source": "multi30k en->de",
                "command": " ".join(["scripts/build_preferences.py", *(argv if argv is not None else sys.argv[1:])]),
                "files": {}}
    write_set(target, splits, manifest)
    print(f"wrote {target}: " + ", ".join(f"{k} {v['rows']} rows" for k, v in manifest["files"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
