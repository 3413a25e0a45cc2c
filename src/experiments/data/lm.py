"""Raw text splits -> tokenized features for language-model tasks: causal and masked-LM blocks, masks fixed
once for a comparable masked-LM eval loss, supervised fine-tuning (prompt + target) and seq2seq features."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Sequence

from transformers import DataCollatorWithFlattening

from experiments.data.prepare import _empty, _first_bad
from experiments.errors import DataError

IGNORE_INDEX = -100  # label the loss skips (transformers' CrossEntropyLoss ignore_index)
MAP_BATCH = 1000  # rows per map batch: blocks are cut per batch (the remainder of each is dropped)


def _num_proc(split, num_proc: int) -> Optional[int]:
    """Worker processes for ``Dataset.map``: only worth it (and only used) with >= 2 rows per worker."""
    return num_proc if num_proc > 1 and len(split) >= 2 * num_proc else None


def _where(desc: str) -> str:
    return f"{desc}: " if desc else ""


def _check_columns(split, columns: Sequence[str], desc: str) -> None:
    missing = [c for c in columns if c not in split.column_names]
    if missing:
        raise DataError(f"{_where(desc)}split has no column(s) {missing} "
                        f"(columns: {', '.join(split.column_names)})")


def _not_text(value) -> bool:
    return not isinstance(value, str) or not value.strip()


def _check_text(split, columns: Sequence[str], desc: str) -> None:
    """Every row of ``columns`` holds non-blank text, else stop naming the row and column."""
    _check_columns(split, columns, desc)
    for column in columns:
        values = split[column]
        row = _first_bad(values, _not_text)
        if row is None:
            continue
        value = values[row]
        what = "is empty" if _empty(value) or isinstance(value, str) else f"is {value!r}, not text"
        raise DataError(f"{_where(desc)}row {row}, column '{column}' {what}; fill it in or drop the row")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a positive number of tokens, got {value!r}")


def _tokenize_documents(tokenizer, batch, column: str) -> Dict[str, List[List[int]]]:
    """The batch's non-blank texts tokenized whole, with the tokenizer's special tokens (blank lines, as in
    wikitext, would only add separators); a batch of none still has every column, so batches agree."""
    documents = [t for t in batch[column] if not _not_text(t)]
    out = tokenizer(documents or [""], verbose=False)
    return {k: list(v) if documents else [] for k, v in out.items()}


def _group(batch: Dict[str, List[List[int]]], block_size: int, labels: bool) -> Dict[str, List[List[int]]]:
    """The HF course's ``group_texts``: concatenate every column, cut into ``block_size`` pieces, drop the
    rest; ``labels``: add a copy of the input_ids blocks."""
    columns = {k: [t for row in rows for t in row] for k, rows in batch.items()}
    total = len(columns["input_ids"]) // block_size * block_size
    out = {k: [v[i:i + block_size] for i in range(0, total, block_size)] for k, v in columns.items()}
    if labels:
        out["labels"] = [list(ids) for ids in out["input_ids"]]
    return out


def _blocks(split, encode, *, block_size: int, labels: bool, num_proc: int, desc: str):
    """Tokenize with ``encode`` (a batched map function), then cut into blocks; none complete: DataError."""
    workers = _num_proc(split, num_proc)
    tokens = split.map(encode, batched=True, batch_size=MAP_BATCH, num_proc=workers,
                       remove_columns=split.column_names, desc=f"{desc} (tokenize)" if desc else None)
    blocks = tokens.map(_group, batched=True, batch_size=MAP_BATCH, num_proc=_num_proc(tokens, num_proc),
                        fn_kwargs={"block_size": block_size, "labels": labels},
                        desc=f"{desc} (blocks)" if desc else None)
    if len(blocks) == 0:
        count = sum(len(ids) for ids in tokens["input_ids"])
        raise DataError(f"{_where(desc)}the split gives {count} tokens, not one complete block of "
                        f"{block_size}; lower tokenizer.max_length or give more text")
    return blocks


def causal_blocks(split, tokenizer, *, text_column: str, block_size: int, num_proc: int = 1, desc: str = ""):
    """Causal-LM training blocks: each document tokenized whole (blank ones skipped), the EOS token appended
    when the tokenizer has one (so documents are separated), everything concatenated and cut into blocks of
    exactly ``block_size`` tokens with ``labels`` a copy of ``input_ids`` (the model shifts them). Blocks are
    cut per map batch of ``MAP_BATCH`` documents, the remainder of each dropped, as in the HF course."""
    _positive("block_size", block_size)
    _check_columns(split, [text_column], desc)
    eos = tokenizer.eos_token_id

    def encode(batch):
        out = _tokenize_documents(tokenizer, batch, text_column)
        ids, mask = out["input_ids"], out["attention_mask"]
        if eos is not None:
            for row_ids, row_mask in zip(ids, mask):
                if not row_ids or row_ids[-1] != eos:
                    row_ids.append(eos)
                    row_mask.append(1)
        return {"input_ids": ids, "attention_mask": mask}

    return _blocks(split, encode, block_size=block_size, labels=True, num_proc=num_proc, desc=desc)


def mlm_blocks(split, tokenizer, *, text_column: str, block_size: int, num_proc: int = 1, desc: str = ""):
    """Masked-LM blocks: each document tokenized with the tokenizer's special tokens ([CLS] … [SEP]), all
    concatenated and cut into ``block_size`` pieces; no labels (the collator masks and labels them).
    DataCollatorForLanguageModeling finds the special tokens itself, so no ``special_tokens_mask`` column."""
    _positive("block_size", block_size)
    _check_columns(split, [text_column], desc)

    def encode(batch):
        return _tokenize_documents(tokenizer, batch, text_column)

    return _blocks(split, encode, block_size=block_size, labels=False, num_proc=num_proc, desc=desc)


def _batch_seed(seed: int, first_row: int) -> int:
    """A 63-bit seed for the map batch starting at ``first_row``: the same on every machine and run."""
    import numpy as np

    return int(np.random.SeedSequence([seed, first_row]).generate_state(2, dtype=np.uint64)[0] >> 1)


def premask(dataset, tokenizer, *, mlm_probability: float, seed: int):
    """Mask once, deterministically, so a masked LM's eval loss compares across evaluations: BERT's rule
    (``mlm_probability`` of the non-special tokens chosen; 80% -> [MASK], 10% -> a random token, 10% kept) by
    transformers' DataCollatorForLanguageModeling, ``labels`` the original id where chosen and -100 elsewhere.
    The collator's own ``seed=`` draws from one generator per process (and refuses worker processes outside a
    DataLoader), so each map batch gets a generator seeded from (seed, first row): the masks depend only on
    the seed and the rows (same torch version). Rows are masked unpadded (concatenated): any lengths work."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    if not 0 < mlm_probability < 1:
        raise DataError(f"mlm_probability must be between 0 and 1, got {mlm_probability}")
    if tokenizer.mask_token is None:
        raise DataError("the tokenizer has no mask token, which masked language modeling needs")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)

    def mask(batch, indices):
        rows = batch["input_ids"]
        lengths = [len(r) for r in rows]
        flat = torch.tensor([t for r in rows for t in r], dtype=torch.long).unsqueeze(0)
        special = [m for r in rows
                   for m in tokenizer.get_special_tokens_mask(r, already_has_special_tokens=True)]
        collator.generator = torch.Generator().manual_seed(_batch_seed(seed, indices[0] if indices else 0))
        inputs, labels = collator.torch_mask_tokens(flat, special_tokens_mask=torch.tensor([special]).bool())
        inputs, labels = inputs[0].split(lengths), labels[0].split(lengths)
        return {"input_ids": [x.tolist() for x in inputs], "labels": [x.tolist() for x in labels]}

    return dataset.map(mask, batched=True, batch_size=MAP_BATCH, with_indices=True, desc="premask")


def sft_features(split, tokenizer, *, prompt_ids: Callable[[str], List[int]], source_column: str,
                 target_column: str, max_target_tokens: int, num_proc: int = 1, desc: str = "",
                 max_tokens: Optional[int] = None):
    """Supervised fine-tuning rows: ``input_ids`` = the prompt as inference builds it (``prompt_ids(source)``,
    chat template and generation prompt included) + the target (no special tokens, cut to
    ``max_target_tokens``) + EOS; ``labels`` = -100 over the prompt, then the target ids and EOS, so the loss
    covers only the answer and its end. With ``num_proc`` > 1, ``prompt_ids`` is pickled with dill into the
    workers: a closure over a tokenizer works; one over an open handle or a model on a GPU does not."""
    _positive("max_target_tokens", max_target_tokens)
    _check_text(split, [source_column, target_column], desc)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no EOS token to end the targets with; give it one (eos_token)")

    def encode(batch):
        targets = tokenizer(batch[target_column], add_special_tokens=False, verbose=False)["input_ids"]
        out: Dict[str, List[List[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
        for source, target in zip(batch[source_column], targets):
            prompt = [int(t) for t in prompt_ids(source)]
            answer = list(target[:max_target_tokens]) + [eos]
            out["input_ids"].append(prompt + answer)
            out["attention_mask"].append([1] * (len(prompt) + len(answer)))
            out["labels"].append([IGNORE_INDEX] * len(prompt) + answer)
        return out

    rows = split.map(encode, batched=True, batch_size=MAP_BATCH, num_proc=_num_proc(split, num_proc),
                     remove_columns=split.column_names, desc=desc or None)
    _check_row_lengths(rows, max_tokens, desc)
    return rows


def _check_row_lengths(rows, max_tokens: Optional[int], desc: str) -> None:
    """A prompt + answer longer than the model's positions (``max_tokens``) stops here, naming the row: the
    prompt is never cut (it is what inference sends), and such a row would fail or train garbage mid-run."""
    if not max_tokens:
        return
    for row, ids in enumerate(rows["input_ids"]):
        if len(ids) > max_tokens:
            raise DataError(f"{_where(desc)}row {row}: the prompt and its answer are {len(ids)} tokens, more than "
                            f"the model takes ({max_tokens}); shorten or drop that row")


def seq2seq_features(split, tokenizer, *, source_column: str, target_column: str, prefix: str,
                     max_source_length: int, max_target_length: int, num_proc: int = 1, desc: str = ""):
    """Encoder-decoder rows: ``prefix + source`` truncated to ``max_source_length`` tokens, ``labels`` the
    target's ids (``text_target``, the tokenizer's target-side special tokens) truncated to
    ``max_target_length``; DataCollatorForSeq2Seq pads the labels with -100."""
    _positive("max_source_length", max_source_length)
    _positive("max_target_length", max_target_length)
    _check_text(split, [source_column, target_column], desc)

    def encode(batch):
        sources = [prefix + s for s in batch[source_column]]
        out = tokenizer(sources, truncation=True, max_length=max_source_length)
        targets = tokenizer(text_target=batch[target_column], truncation=True, max_length=max_target_length)
        out["labels"] = targets["input_ids"]
        return out

    return split.map(encode, batched=True, batch_size=MAP_BATCH, num_proc=_num_proc(split, num_proc),
                     remove_columns=split.column_names, desc=desc or None)


def label_token_share(dataset) -> float:
    """Share of label tokens the loss counts (not -100); 0.0 for no tokens."""
    total = counted = 0
    for labels in dataset["labels"]:
        total += len(labels)
        counted += sum(1 for t in labels if t != IGNORE_INDEX)
    return counted / total if total else 0.0


def padding_share(batches: Iterable[Dict]) -> float:
    """Share of positions in collated batches that are padding (``attention_mask == 0``); 0.0 for none."""
    import torch

    total = padded = 0
    for batch in batches:
        mask = torch.as_tensor(batch["attention_mask"])
        total += mask.numel()
        padded += int((mask == 0).sum())
    return padded / total if total else 0.0


NUM_EXAMPLES = "num_examples"  # padding-free batches: how many examples the one flattened row holds


class Flattening(DataCollatorWithFlattening):
    """transformers' DataCollatorWithFlattening (one row, position ids restarting at each example, the first
    label of each example -100 so no example predicts the next one's start), plus the example count, which the
    flattened row no longer shows (the training loop pops it)."""

    flattens = True

    def __call__(self, features, return_tensors=None, separator_id=None):
        batch = super().__call__(features, return_tensors, separator_id)
        batch[NUM_EXAMPLES] = len(features)
        batch["use_cache"] = False  # with a cache, transformers does not build the per-example masks
        return batch


def flattening_collator() -> Flattening:
    return Flattening(return_position_ids=True, separator_id=IGNORE_INDEX)
