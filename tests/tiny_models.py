"""Tiny random checkpoints for the tasks no offline model covers (inference and training tests).

They share MiniLM's real WordPiece tokenizer, so inputs tokenize as they would for a BERT model; the
weights are random (seeded), which is all plumbing, agreement and loss-falls tests need.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict


def _bert_config(**extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512, **extra)


def _decisive(model):
    """Scale the classifier so random logits differ clearly (no near-ties between labels)."""
    import torch

    with torch.no_grad():
        model.classifier.weight.mul_(200.0)
    return model


def _classifier():
    from transformers import BertForSequenceClassification

    return _decisive(BertForSequenceClassification(_bert_config(num_labels=2, id2label={0: "negative", 1: "positive"},
                                                      label2id={"negative": 0, "positive": 1})))


def _nli():
    from transformers import BertForSequenceClassification

    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    return _decisive(BertForSequenceClassification(_bert_config(num_labels=3, id2label=labels,
                                                                label2id={v: k for k, v in labels.items()})))


def _no_entailment():
    from transformers import BertForSequenceClassification

    labels = {0: "sport", 1: "politics", 2: "tech"}
    return BertForSequenceClassification(_bert_config(num_labels=3, id2label=labels,
                                                      label2id={v: k for k, v in labels.items()}))


def _mlm():
    from transformers import BertForMaskedLM

    return BertForMaskedLM(_bert_config())


def _qa():
    from transformers import BertForQuestionAnswering

    return BertForQuestionAnswering(_bert_config())


def _t5():
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
                      pad_token_id=0, eos_token_id=102, decoder_start_token_id=0,
                      task_specific_params={"summarization": {"prefix": "summarize: "}})
    return T5ForConditionalGeneration(config)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=30522, n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                      bos_token_id=101, eos_token_id=102, pad_token_id=0))


def _llama():
    """Llama architecture (SmolLM2's): transformers keeps flattened examples apart by their position ids."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                        bos_token_id=101, eos_token_id=102, pad_token_id=0))


def _opt():
    """OPT: positions come from the attention mask, so flattened examples are not kept apart."""
    from transformers import OPTConfig, OPTForCausalLM

    return OPTForCausalLM(OPTConfig(vocab_size=30522, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                    num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=256,
                                    bos_token_id=101, eos_token_id=102, pad_token_id=0))


BUILDERS: Dict[str, Callable] = {
    "classifier": _classifier,
    "nli": _nli,
    "no_entailment": _no_entailment,
    "mlm": _mlm,
    "qa": _qa,
    "t5": _t5,
    "gpt2": _gpt2,
    "llama": _llama,
    "opt": _opt,
}


def build_all(root: Path, tokenizer_dir: Path) -> Dict[str, Path]:
    """save_pretrained each tiny model (safetensors) with MiniLM's tokenizer into ``root/<name>``."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    paths = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        model = build()
        if name in ("t5", "gpt2", "llama", "opt"):
            model.generation_config.pad_token_id = 0
            model.generation_config.eos_token_id = 102
        target = root / name
        model.save_pretrained(str(target), safe_serialization=True)
        if name in ("t5", "gpt2", "llama", "opt"):  # generators end their outputs with EOS: [SEP] (id 102), as configured
            AutoTokenizer.from_pretrained(str(tokenizer_dir), eos_token="[SEP]").save_pretrained(str(target))
        else:
            tokenizer.save_pretrained(str(target))
        paths[name] = target
    return paths
