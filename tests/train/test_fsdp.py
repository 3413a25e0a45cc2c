"""Sharded training, ``trainer.distributed=fsdp``: FSDP2 over 2 real CPU processes (gloo) and over one (the
one-GPU case), its saves and checkpoints, LoRA under it, and the settings it refuses."""
from __future__ import annotations

import json

import pytest

from experiments.config.validate import compose, to_typed
from experiments.errors import ExperimentError

# As test_ddp.py: dropout off, so the runs compute the same function; the global batch is 16 in each.
COMMON = ["dataset.max_train_samples=64", "dataset.max_eval_samples=40", "tokenizer.max_length=32",
          "trainer.epochs=1", "trainer.lr=1e-4", "trainer.log_every_n_steps=1", "logger=csv",
          "+model.config_overrides.hidden_dropout_prob=0.0",
          "+model.config_overrides.attention_probs_dropout_prob=0.0"]
FSDP = ["trainer.distributed=fsdp", "trainer.num_processes=2", "trainer.per_device_batch_size=8"]


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def _losses(metrics):
    return [record["train_loss"] for record in metrics["train_log"]]


def _logits(folder, model=None):
    """Logits of two sentences from the model saved in ``folder`` (plain from_pretrained: no FSDP, no peft)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = model or AutoModelForSequenceClassification.from_pretrained(str(folder))
    batch = tokenizer(["Shares rose after the results.", "The match ended in a draw."], return_tensors="pt",
                      padding=True)
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.mark.slow
def test_two_sharded_processes_match_one_process_and_save_whole_models(cli, tmp_path):
    """Full fine-tuning in float32: the same losses as one process (plain, and FSDP over one process: the
    one-GPU case, through the same launcher), and best/ + last/ hold the whole model (gathered from both shards)
    that plain from_pretrained loads; the checkpoint holds one shard per process."""
    common = COMMON + ["trainer.mixed_precision=no"]
    one = cli(*common, "trainer.per_device_batch_size=16", f"hydra.run.dir={tmp_path}/one")
    assert one.returncode == 0, one.stderr[-2000:]
    two = cli(*common, *FSDP, f"hydra.run.dir={tmp_path}/two")
    assert two.returncode == 0, two.stderr[-12000:]
    alone = cli(*common, "trainer.distributed=fsdp", "trainer.per_device_batch_size=16", "trainer.save_model=false",
                f"hydra.run.dir={tmp_path}/alone")
    assert alone.returncode == 0, alone.stderr[-12000:]

    m1, m2, m_alone = _metrics(tmp_path / "one"), _metrics(tmp_path / "two"), _metrics(tmp_path / "alone")
    assert m2["distributed_type"] == "FSDP" and m2["num_processes"] == 2
    assert m_alone["distributed_type"] == "FSDP" and m_alone["num_processes"] == 1
    assert _losses(m_alone) == pytest.approx(_losses(m1), rel=1e-4)
    assert m1["global_batch_size"] == m2["global_batch_size"] == 16 and m2["num_eval_samples"] == 40
    assert m1["final"]["global_step"] == m2["final"]["global_step"] == 4
    assert _losses(m2) == pytest.approx(_losses(m1), rel=1e-4)
    assert m2["final"]["eval_loss"] == pytest.approx(m1["final"]["eval_loss"], rel=1e-4)
    assert m2["final"]["eval_accuracy"] == m1["final"]["eval_accuracy"]

    from safetensors.torch import load_file

    for name in ("best", "last"):
        whole, reference = (load_file(str(tmp_path / run / name / "model.safetensors")) for run in ("two", "one"))
        assert whole.keys() == reference.keys()
        assert max((whole[k] - reference[k]).abs().max().item() for k in whole) < 1e-5, name
    assert _logits(tmp_path / "two" / "best").allclose(_logits(tmp_path / "one" / "best"), atol=1e-4)
    shards = tmp_path / "two" / "checkpoints" / "step_4" / "pytorch_model_fsdp_0"
    assert sorted(p.name for p in shards.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]


@pytest.mark.slow
def test_lora_under_fsdp_saves_merged_and_adapter_and_resumes_from_shards(cli, tmp_path, minilm_dir):
    """LoRA in the default precision (bf16 where the CPU runs it): best/ holds the merged model and adapter/
    with the same logits; a run resumed from the sharded step-2 checkpoint continues exactly."""
    common = COMMON + FSDP + ["peft=lora", "peft.dropout=0.0", "trainer.lr=1e-3", "trainer.save_steps=2",
                              "trainer.save_total_limit=10"]
    first = cli(*common, f"hydra.run.dir={tmp_path}/first")
    assert first.returncode == 0, first.stderr[-12000:]
    step_2 = tmp_path / "first" / "checkpoints" / "step_2"
    resumed = cli(*common, f"trainer.resume={step_2}", f"hydra.run.dir={tmp_path}/resumed")
    assert resumed.returncode == 0, resumed.stderr[-12000:]

    m1, m2 = _metrics(tmp_path / "first"), _metrics(tmp_path / "resumed")
    assert m1["distributed_type"] == "FSDP" and m1["peft"] == "lora"
    assert 0 < m1["trainable_params"] < m1["total_params"] / 20
    assert m2["resumed_from"] == str(step_2) and m2["final"]["global_step"] == 4
    assert _losses(m2) == pytest.approx(_losses(m1), rel=1e-5)
    assert m2["final"]["eval_loss"] == pytest.approx(m1["final"]["eval_loss"], rel=1e-5)

    from transformers import AutoConfig, AutoModelForSequenceClassification

    from experiments.adapters import load_adapter, saved_adapter

    best = tmp_path / "first" / "best"
    assert saved_adapter(best / "adapter")["name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    task_config = AutoConfig.from_pretrained(str(best / "adapter"))  # labels and head of the trained model
    base = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir), config=task_config)
    adapted = load_adapter(base, best / "adapter")
    assert _logits(best, adapted).allclose(_logits(best), atol=1e-4)


@pytest.mark.parametrize("overrides,needle", [
    (["trainer.distributed=zero3"], "choose from: ddp, fsdp"),
    (["trainer=hf_trainer", "trainer.distributed=fsdp", "trainer.num_processes=2"], "trainer.backend=accelerate"),
])
def test_settings_fsdp_cannot_run_are_refused_naming_the_key(overrides, needle):
    with pytest.raises(ExperimentError) as info:
        to_typed(compose(overrides))
    assert "trainer.distributed" in str(info.value) and needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_shows_the_setting_and_refuses_the_hf_trainer_in_one_line(cli, tmp_path):
    shown = cli("trainer.distributed=fsdp", "trainer.num_processes=2", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0 and "distributed: fsdp" in shown.stdout
    refused = cli("trainer=hf_trainer", "trainer.distributed=fsdp", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert refused.returncode == 2
    lines = [line for line in refused.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invalid config: trainer.distributed: fsdp runs with")
    assert not (tmp_path / "run").exists()


def _tiny_bert(cls_name: str):
    import transformers

    config = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, num_labels=3)
    return getattr(transformers, cls_name)(config)


def test_plugin_shards_transformer_layers_and_checkpoints_as_shards():
    from experiments.config.schema import TrainerConfig
    from experiments.train import sharding

    assert sharding.fsdp_plugin(TrainerConfig()) is None  # ddp
    plugin = sharding.fsdp_plugin(TrainerConfig(distributed="fsdp", num_processes=2))
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert str(plugin.state_dict_type).endswith("SHARDED_STATE_DICT")
    plugin.set_auto_wrap_policy(_tiny_bert("BertForSequenceClassification"))
    # BERT's _no_split_modules also names BertEmbeddings: the embedding table gets a group of its own instead
    assert plugin.transformer_cls_names_to_wrap == ["BertLayer"]


def test_layers_are_found_through_lora_and_tied_weights_fsdp_cannot_place_are_refused():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    from experiments.train import sharding

    lora = get_peft_model(_tiny_bert("BertForSequenceClassification"), LoraConfig(r=2, task_type="SEQ_CLS"))
    assert sharding.layer_classes(lora) == ["BertLayer"]
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=32, n_embd=16, n_layer=2, n_head=2))
    sharding.check_tied_weights(gpt2)  # a tied LM head: Accelerate keeps both ends in one group
    with pytest.raises(ExperimentError, match="cls.predictions.bias and cls.predictions.decoder.bias"):
        sharding.check_tied_weights(_tiny_bert("BertForMaskedLM"))
