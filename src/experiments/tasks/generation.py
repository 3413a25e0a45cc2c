"""Generation tasks: text-generation, summarization and translation.

Decoder-only (causal) models run through ``generate`` with left padding; inputs can be wrapped in the
tokenizer's chat template. transformers 5 removed the summarization and translation pipelines, so
encoder-decoder models run ``AutoModelForSeq2SeqLM.generate`` with the model's task prefix, and
causal / chat models are prompted (their ``pipeline`` path is the text-generation pipeline). Outputs keep
the old pipeline shapes: ``[{"generated_text"}]``, ``[{"summary_text"}]``, ``[{"translation_text"}]``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from experiments import hardware, metrics
from experiments.data.lm import causal_blocks, flattening_collator, seq2seq_features, sft_features
from experiments.data.prepare import example_ids, select_text_splits
from experiments.errors import ExperimentError
from experiments.metrics.examples import (
    DEFAULT_ROUGE_TYPES,
    TRANSLATION_METRICS,
    rouge_stats,
    spec,
    translation_stats,
)
from experiments.modeling import config_positions, separates_flattened
from experiments.tasks.base import Context, Item, Task, TokenLossTraining, TrainingData, text_field

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from experiments.config.schema import ExperimentConfig, TaskConfig

log = logging.getLogger(__name__)

LANGUAGES = {"en": "English", "de": "German", "fr": "French", "ro": "Romanian", "es": "Spanish", "it": "Italian",
             "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "cs": "Czech"}


FIRST_TOKEN_TIMES = "first_token_times"  # Context.extra key: when each generate() call had its first new token


class FirstTokenClock(StoppingCriteria):
    """A stopping criterion that never stops: it appends the time of its first call (right after the first
    new token of a generate() call) to ``times``, which gives time-to-first-token per batch."""

    def __init__(self, times: List[float]) -> None:
        self.times, self.seen = times, False

    def __call__(self, input_ids, scores, **kwargs):
        if not self.seen:
            if input_ids.is_cuda:
                torch.cuda.synchronize(input_ids.device)
            self.times.append(time.perf_counter())
            self.seen = True
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def first_token_clock(times: List[float]) -> StoppingCriteriaList:
    return StoppingCriteriaList([FirstTokenClock(times)])


def language_name(code: Optional[str]) -> str:
    return LANGUAGES.get(str(code).lower(), str(code)) if code else ""


class Generation(Task):
    """Shared generate() plumbing for causal and seq2seq models."""

    output_key = "generated_text"
    generates = True

    # --- model --------------------------------------------------------------------------------------
    def method_name(self) -> str:
        return "causal"

    def prepare_tokenizer(self, tokenizer, model) -> None:
        if not model.config.is_encoder_decoder:
            tokenizer.padding_side = "left"  # decoder-only models continue from the right end
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ExperimentError("generation needs a tokenizer with a pad or eos token")
            tokenizer.pad_token = tokenizer.eos_token

    def use_chat(self) -> bool:
        chat = self.cfg.chat
        has_template = getattr(self.ctx.tokenizer, "chat_template", None) is not None
        if chat and not has_template:
            raise ExperimentError("task.chat=true but the tokenizer has no chat template")
        return has_template if chat is None else bool(chat)

    def generate_kwargs(self) -> Dict[str, Any]:
        task = self.cfg
        kwargs: Dict[str, Any] = {"max_new_tokens": task.max_new_tokens, "num_beams": task.num_beams,
                                  "do_sample": task.do_sample}
        if task.min_new_tokens:
            kwargs["min_new_tokens"] = task.min_new_tokens
        kwargs.update(task.options)
        kwargs.update(self.ctx.cfg.inference.options)
        kwargs.setdefault("stopping_criteria", first_token_clock(self.ctx.extra.setdefault(FIRST_TOKEN_TIMES, [])))
        return kwargs

    def token_costs(self, values: List[Any]) -> List[int]:
        """The prompt and the tokens generated after it (the KV cache holds both)."""
        new_tokens = int(self.generate_kwargs().get("max_new_tokens") or 0)
        return [cost + new_tokens for cost in super().token_costs(values)]

    # --- prompts ------------------------------------------------------------------------------------
    def prompt(self, value: str) -> Any:
        """What the causal model reads for one input: the text, or a one-message chat."""
        return [{"role": "user", "content": value}] if self.use_chat() else value

    def prompt_ids(self, prompt: Any) -> List[int]:
        """Token ids of one prompt (a chat is rendered with its generation prompt): what the model continues."""
        tok = self.ctx.tokenizer
        if isinstance(prompt, list):
            return list(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"])
        return tok(prompt)["input_ids"]

    def _causal_manual(self, prompts: List[Any]) -> List[str]:
        tok, model = self.ctx.tokenizer, self.ctx.model
        ids = [self.prompt_ids(prompt) for prompt in prompts]
        batch = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(self.ctx.device)
        kwargs = self.generate_kwargs()
        kwargs.setdefault("pad_token_id", tok.pad_token_id)
        out = model.generate(**batch, **kwargs)
        return tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    def pipeline_kwargs(self) -> Dict[str, Any]:
        return {"return_full_text": False, **self.generate_kwargs()}

    def _causal_pipeline(self, prompts: List[Any]) -> List[str]:
        out = self.get_pipeline()(prompts, batch_size=len(prompts), **self.pipeline_kwargs())
        return [o[0]["generated_text"] for o in out]

    def output_text(self, output: Any) -> Optional[str]:
        return output[0][self.output_key]


def is_encoder_only(model_config: PreTrainedConfig) -> bool:
    """BERT-like checkpoints: a masked-LM encoder with no decoder to generate with."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return (not getattr(model_config, "is_encoder_decoder", False)
            and model_config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES)


class GenerationTraining(TokenLossTraining):
    """Fine-tuning a generation task: seq2seq (``text_target`` labels) or causal (prompt -> target, with the
    prompt's labels masked), evaluated by its loss and by generating for ``trainer.eval_generate_samples``
    eval examples with the inference code (ROUGE / BLEU+chrF)."""

    def setup_training(self, model_config: PreTrainedConfig, cfg: ExperimentConfig) -> None:
        if is_encoder_only(model_config):
            raise ExperimentError(f"task={self.name} needs a model that generates (encoder-decoder or causal); "
                                  f"{cfg.model.name_or_path} is an encoder-only '{model_config.model_type}' model")
        super().setup_training(model_config, cfg)
        self.shift_labels = self.train_auto_class == "AutoModelForCausalLM"

    def data_task(self, tokenizer, cfg: ExperimentConfig):
        """A copy of this task on the tokenizer (no model yet), to build prompts exactly as inference does."""
        task = type(self)(cfg.task)
        task.ctx = Context(cfg, _ConfigOnly(self.model_config), tokenizer, None)
        return task

    def sft_data(self, train, evaluation, tokenizer, cfg: ExperimentConfig, source: str, target: str):
        task = self.data_task(tokenizer, cfg)

        def prompt_ids(text: str) -> List[int]:
            return task.prompt_ids(task.pipeline_inputs([text])[0])

        positions = config_positions(self.model_config)
        return [sft_features(split, tokenizer, prompt_ids=prompt_ids, source_column=source, target_column=target,
                             max_target_tokens=cfg.task.max_new_tokens, num_proc=cfg.dataset.num_proc,
                             desc=f"prompt+target {cfg.dataset.name} {name}", max_tokens=positions)
                for name, split in (("train", train), ("eval", evaluation))]

    def collator(self, tokenizer, cfg: ExperimentConfig):
        self.flattened = self.padding_free(cfg)
        if self.flattened:
            return flattening_collator()
        return self.eval_collator(tokenizer, cfg)

    def flattening_works(self, model, cfg: ExperimentConfig) -> bool:
        if not getattr(self, "flattened", False) or separates_flattened(model):
            return True
        if cfg.collator.padding_free == "true":
            raise ExperimentError(f"collator.padding_free=true, but {cfg.model.name_or_path} "
                                  f"({model.config.model_type}) mixes flattened examples in attention (transformers "
                                  f"builds no per-example mask for it): use collator.padding_free=false")
        log.info("padding-free batches off: %s does not keep flattened examples apart", model.config.model_type)
        return False

    def eval_collator(self, tokenizer, cfg: ExperimentConfig):
        """Padded rows: evaluation needs one row per example (per-example losses, gathered across processes)."""
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, pad_to_multiple_of=cfg.collator.pad_to_multiple_of)

    def padding_free(self, cfg: ExperimentConfig) -> bool:
        """``collator.padding_free`` for this run: causal prompt -> target rows only (LM blocks have no padding;
        encoder-decoder models cannot be flattened)."""
        wanted = hardware.padding_free(cfg.collator.padding_free, hardware.training_device_type(), cfg.trainer.backend)
        if wanted and not self.shift_labels:
            if cfg.collator.padding_free == "true":
                raise ExperimentError(f"collator.padding_free=true flattens decoder-only batches; {cfg.model.name_or_path} "
                                      f"is an encoder-decoder model: use collator.padding_free=false")
            return False
        return wanted and self.has_padding(cfg)

    def has_padding(self, cfg: ExperimentConfig) -> bool:
        return True

    def inference_metrics(self, model, tokenizer, cfg: ExperimentConfig, data) -> Dict[str, float]:
        limit = cfg.trainer.eval_generate_samples
        items = data.eval_items[:limit] if limit else data.eval_items
        self.generated = (items, self.run_inference(model, tokenizer, cfg, items) if items else [])
        if not items:
            return {}
        return self.quality_of(self.generated[1], items)

    def eval_records(self, columns, scores, data, cfg: ExperimentConfig):
        """The token-loss rows, with the generated text, the reference and its BLEU / chrF or ROUGE
        statistics on the examples generated for (``trainer.eval_generate_samples``)."""
        records = super().eval_records(columns, scores, data, cfg)
        found = self.example_rows(*getattr(self, "generated", ([], [])))
        if found is None:
            return records
        records.metrics.update(found[0])
        generated = {row["id"]: row for row in found[1]}
        records.rows = (_with_generation(row, generated.get(row["id"])) for row in records.rows)
        return records


def _with_generation(row: Dict[str, Any], generated: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if generated is None:
        return row
    return {**row, "prediction": generated["prediction"], "reference": generated["reference"],
            "stats": {**row["stats"], **generated["stats"]}}


def text_rows(scored, output_text, stats) -> Iterator[Dict[str, Any]]:
    """Rows of generated texts against their references, ``stats(predictions, references)`` per example."""
    predictions = [output_text(output) or "" for _, output, _ in scored]
    references = [str(reference) for _, _, reference in scored]
    for (item, _, _), prediction, reference, row_stats in zip(scored, predictions, references,
                                                               stats(predictions, references)):
        yield {"id": item.id, "prediction": prediction, "reference": reference, "stats": row_stats}


class _ConfigOnly:
    """Stands in for the model while building training prompts: only its config is read."""

    def __init__(self, model_config: PreTrainedConfig) -> None:
        self.config = model_config


class TextGeneration(GenerationTraining, Generation):
    name = "text-generation"
    hf_trainer = True  # a causal LM's eval loss is all it is scored on
    pipeline_task = "text-generation"
    auto_class = "AutoModelForCausalLM"
    head = "causal-LM"

    def check_model(self, model, tokenizer, task_cfg: TaskConfig) -> None:
        if model.config.is_encoder_decoder:
            raise ExperimentError("text-generation needs a decoder-only (causal) model; for an encoder-decoder "
                                  "model use task=summarization or task=translation")

    def pipeline_inputs(self, batch: List[Any]) -> List[Any]:
        return [self.prompt(x) for x in batch]

    def pipeline(self, batch: List[Any]) -> List[Any]:
        return [[{"generated_text": t}] for t in self._causal_pipeline(self.pipeline_inputs(batch))]

    def manual(self, batch: List[Any]) -> List[Any]:
        return [[{"generated_text": t}] for t in self._causal_manual(self.pipeline_inputs(batch))]

    # --- training ------------------------------------------------------------------------------------
    def setup_training(self, model_config: PreTrainedConfig, cfg: ExperimentConfig) -> None:
        if getattr(model_config, "is_encoder_decoder", False):
            raise ExperimentError("task=text-generation trains a decoder-only (causal) model; for an encoder-decoder "
                                  "model use task=summarization or task=translation")
        super().setup_training(model_config, cfg)

    def has_padding(self, cfg: ExperimentConfig) -> bool:
        return bool(cfg.dataset.response_column)  # raw text is cut into equal blocks: nothing to flatten

    def training_data(self, raw, tokenizer, cfg: ExperimentConfig) -> TrainingData:
        """Raw text cut into blocks of max_length tokens, or prompt -> response rows (dataset.response_column)."""
        data_cfg = cfg.dataset
        response = data_cfg.response_column
        train, evaluation = select_text_splits(raw, data_cfg, [data_cfg.text_column] + ([response] if response else []))
        if response:
            features = self.sft_data(train, evaluation, tokenizer, cfg, data_cfg.text_column, response)
            # no eval items: free text has no reference metric, so perplexity (from the eval loss) is the measure
            return TrainingData(features[0], features[1])
        block = int(cfg.task.max_length or cfg.tokenizer.max_length)
        features = [causal_blocks(split, tokenizer, text_column=data_cfg.text_column, block_size=block,
                                  num_proc=data_cfg.num_proc, desc=f"text blocks {data_cfg.name} {name}")
                    for name, split in (("train", train), ("eval", evaluation))]
        return TrainingData(features[0], features[1])


class Seq2SeqTask(GenerationTraining, Generation):
    """summarization / translation: seq2seq generate() with a prefix, or a prompted causal model."""

    pipeline_task = None  # removed from transformers 5; causal models use the text-generation pipeline
    head = "seq2seq-LM"

    def choose_auto_class(self, model_config: PreTrainedConfig, task_cfg: TaskConfig) -> str:
        method = task_cfg.method or ("seq2seq" if getattr(model_config, "is_encoder_decoder", False) else "causal")
        if method == "seq2seq" and not getattr(model_config, "is_encoder_decoder", False):
            raise ExperimentError(f"task.method=seq2seq needs an encoder-decoder model; this one is "
                                  f"'{model_config.model_type}' (use task.method=causal to prompt it)")
        if method not in ("seq2seq", "causal"):
            raise ExperimentError(f"task.method={method} is not a {self.name} method (seq2seq or causal)")
        return "AutoModelForSeq2SeqLM" if method == "seq2seq" else "AutoModelForCausalLM"

    def method_name(self) -> str:
        return "seq2seq" if self.ctx.model.config.is_encoder_decoder else "causal"

    @property
    def has_pipeline(self) -> bool:
        return self.ctx is not None and self.method_name() == "causal"

    def pipeline_name(self) -> Optional[str]:
        return "text-generation" if self.has_pipeline else None

    def task_params_key(self) -> str:
        return self.name

    def default_prefix(self) -> str:
        params = getattr(self.ctx.model.config, "task_specific_params", None) or {}
        return str(params.get(self.task_params_key(), {}).get("prefix", "") or "")

    def prefix(self) -> str:
        return self.cfg.prefix if self.cfg.prefix is not None else self.default_prefix()

    def format_prompt(self, text: str) -> str:
        task = self.cfg
        return (task.prompt or "{text}").format(text=text, source=language_name(task.source_lang),
                                                  target=language_name(task.target_lang))

    def _truncate(self, text: str) -> str:
        """The source text cut to ``max_length`` tokens (causal prompts must keep their instruction)."""
        tok = self.ctx.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= self.ctx.max_length else tok.decode(ids[: self.ctx.max_length])

    def pipeline_inputs(self, batch: List[Any]) -> List[Any]:
        return [self.prompt(self.format_prompt(self._truncate(x))) for x in batch]

    def _generate(self, batch: List[str], use_pipeline: bool) -> List[str]:
        if self.method_name() == "causal":
            prompts = self.pipeline_inputs(batch)
            texts = self._causal_pipeline(prompts) if use_pipeline else self._causal_manual(prompts)
            return [t.strip() for t in texts]
        tok, model = self.ctx.tokenizer, self.ctx.model
        prefix = self.prefix()
        encoded = tok([prefix + x for x in batch], padding=True, truncation=True, max_length=self.ctx.max_length,
                      return_token_type_ids=False, return_tensors="pt").to(self.ctx.device)
        out = model.generate(**encoded, **self.generate_kwargs())
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

    def pipeline(self, batch: List[Any]) -> List[Any]:
        return [[{self.output_key: t}] for t in self._generate(batch, use_pipeline=self.has_pipeline)]

    # --- training ------------------------------------------------------------------------------------
    def source_target_columns(self, cfg: ExperimentConfig):
        return cfg.dataset.text_column, cfg.dataset.label_column

    def training_data(self, raw, tokenizer, cfg: ExperimentConfig) -> TrainingData:
        """seq2seq: ``prefix + source`` -> ``text_target``; causal: the inference prompt -> target + EOS."""
        source, target = self.source_target_columns(cfg)
        train, evaluation = select_text_splits(raw, cfg.dataset, [source, target])
        if self.shift_labels:
            features = self.sft_data(train, evaluation, tokenizer, cfg, source, target)
        else:
            prefix = self.data_task(tokenizer, cfg).prefix()
            max_source = int(cfg.task.max_length or cfg.tokenizer.max_length)
            features = [seq2seq_features(split, tokenizer, source_column=source, target_column=target, prefix=prefix,
                                         max_source_length=max_source, max_target_length=cfg.task.max_new_tokens,
                                         num_proc=cfg.dataset.num_proc, desc=f"seq2seq {cfg.dataset.name} {name}")
                        for name, split in (("train", train), ("eval", evaluation))]

        items = [Item(example, row[source], row[target]) for example, row in zip(example_ids(evaluation), evaluation)]
        return TrainingData(features[0], features[1], items)

    def manual(self, batch: List[Any]) -> List[Any]:
        return [[{self.output_key: t}] for t in self._generate(batch, use_pipeline=False)]


class Summarization(Seq2SeqTask):
    name = "summarization"
    output_key = "summary_text"

    def quality(self, outputs: List[Any], references: List[Any]) -> Dict[str, float]:
        pairs = [(self.output_text(o), str(r)) for o, r in zip(outputs, references) if r is not None]
        if not pairs:
            return {}
        scores = metrics.load("rouge").compute(predictions=[p for p, _ in pairs], references=[r for _, r in pairs])
        return {key: float(value) for key, value in scores.items()}

    def example_rows(self, items, outputs):
        """Each summary's ROUGE F-measures (what :meth:`quality` averages)."""
        scored = self.scored(items, outputs)
        if not scored:
            return None
        return ({name: spec("mean_score") for name in DEFAULT_ROUGE_TYPES},
                text_rows(scored, self.output_text, lambda p, r: rouge_stats(p, r, DEFAULT_ROUGE_TYPES)))


class Translation(Seq2SeqTask):
    name = "translation"
    output_key = "translation_text"

    def task_params_key(self) -> str:
        return f"translation_{self.cfg.source_lang}_to_{self.cfg.target_lang}"

    def default_prefix(self) -> str:
        prefix = super().default_prefix()
        if not prefix and self.ctx.model.config.model_type == "t5":
            task = self.cfg
            prefix = f"translate {language_name(task.source_lang)} to {language_name(task.target_lang)}: "
        return prefix

    def from_record(self, record: Dict[str, Any], text_column: Optional[str] = None) -> Any:
        """The source-language column (named by task.source_lang) when the row has one."""
        source = self.cfg.source_lang
        if source and source in record:
            return record[source]
        return text_field(record, text_column)

    def reference_from_record(self, record: Dict[str, Any], reference_column: Optional[str] = None) -> Any:
        target = self.cfg.target_lang
        if target and target in record:
            return record[target]
        return super().reference_from_record(record, reference_column)

    def quality(self, outputs: List[Any], references: List[Any]) -> Dict[str, float]:
        pairs = [(self.output_text(o), str(r)) for o, r in zip(outputs, references) if r is not None]
        if not pairs:
            return {}
        predictions, refs = [p for p, _ in pairs], [r for _, r in pairs]
        bleu = metrics.load("sacrebleu").compute(predictions=predictions, references=refs)["score"]
        chrf = metrics.load("chrf").compute(predictions=predictions, references=refs)["score"]
        return {"bleu": float(bleu), "chrf": float(chrf)}

    def example_rows(self, items, outputs):
        """Each translation's sacrebleu statistics of BLEU and chrF (corpus scores recomputed from their sums)."""
        scored = self.scored(items, outputs)
        if not scored:
            return None
        return dict(TRANSLATION_METRICS), text_rows(scored, self.output_text, translation_stats)
