"""experiments.tasks.generation, directly: language names, the tokenizer a generator needs (left padding, a
pad token), chat or plain prompts, the generate() arguments and who overrides whom, the Auto class and the
prefix of summarization / translation, prompt templates and source truncation, a left-padded batch that
generates what each prompt generates alone, which models each task trains, padding-free choices, and how
generated texts join the token-loss eval rows."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from task_helpers import assert_one_line, config, make_task

from experiments.errors import ExperimentError
from experiments.metrics.examples import recompute
from experiments.tasks.base import Item, TrainingData
from experiments.tasks.generation import (
    FIRST_TOKEN_TIMES,
    LANGUAGES,
    FirstTokenClock,
    Summarization,
    TextGeneration,
    Translation,
    is_encoder_only,
    language_name,
)

WORDS = st.sampled_from("once upon a time there was hello the weather today is quite nice and cold".split())
PROMPT = st.lists(WORDS, min_size=1, max_size=10).map(" ".join)


@given(code=st.sampled_from(sorted(LANGUAGES)), upper=st.booleans())
def test_a_known_language_code_is_its_english_name_in_any_case(code, upper):
    assert language_name(code.upper() if upper else code) == LANGUAGES[code]


@given(code=st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=6)))
def test_an_unknown_code_is_itself_and_none_is_empty(code):
    expected = "" if not code else LANGUAGES.get(code.lower(), code)
    assert language_name(code) == expected


@pytest.mark.parametrize("name, encoder_only", [("mlm", True), ("qa", True), ("gpt2", False), ("t5", False),
                                                ("llama", False), ("opt", False)])
def test_only_masked_lm_encoders_are_encoder_only(name, encoder_only, tiny):
    assert is_encoder_only(tiny(name).config) is encoder_only


def test_the_first_token_clock_records_its_first_call_and_never_stops():
    import torch

    times = []
    clock = FirstTokenClock(times)
    for _ in range(3):
        stop = clock(torch.zeros(4, 2, dtype=torch.long), None)
        assert stop.tolist() == [False] * 4
    assert len(times) == 1


def _tokenizer(pad="[PAD]", eos="[SEP]"):
    return SimpleNamespace(padding_side="right", pad_token=pad, eos_token=eos)


@pytest.mark.parametrize("encoder_decoder", [False, True])
def test_decoder_only_models_pad_on_the_left_and_a_missing_pad_is_the_eos(encoder_decoder):
    model = SimpleNamespace(config=SimpleNamespace(is_encoder_decoder=encoder_decoder))
    tokenizer = _tokenizer(pad=None)
    TextGeneration(config("text-generation").task).prepare_tokenizer(tokenizer, model)
    assert tokenizer.padding_side == ("right" if encoder_decoder else "left")
    assert tokenizer.pad_token == "[SEP]"
    with pytest.raises(ExperimentError) as info:
        TextGeneration(config("text-generation").task).prepare_tokenizer(_tokenizer(None, None), model)
    assert_one_line(info.value, "pad or eos token")


@pytest.mark.parametrize("chat", [None, True, False])
@pytest.mark.parametrize("template", [None, "{{ messages }}"])
def test_chat_prompts_follow_task_chat_else_the_tokenizer_s_template(chat, template):
    task = make_task(TextGeneration, None, SimpleNamespace(chat_template=template), chat=chat)
    if chat and template is None:
        with pytest.raises(ExperimentError) as info:
            task.prompt("hi")
        assert_one_line(info.value, "task.chat=true", "no chat template")
        return
    chatting = template is not None if chat is None else chat
    assert task.prompt("hi") == ([{"role": "user", "content": "hi"}] if chatting else "hi")


OPTIONS = st.dictionaries(st.sampled_from(["max_new_tokens", "num_beams", "temperature", "top_p"]),
                          st.integers(1, 9), max_size=3)


@given(max_new_tokens=st.integers(1, 64), min_new_tokens=st.one_of(st.none(), st.integers(0, 8)),
       num_beams=st.integers(1, 4), do_sample=st.booleans(), task_options=OPTIONS, inference_options=OPTIONS)
def test_generate_arguments_are_the_task_s_then_its_options_then_inference_options(
        max_new_tokens, min_new_tokens, num_beams, do_sample, task_options, inference_options):
    task = make_task(TextGeneration, None, None, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                     num_beams=num_beams, do_sample=do_sample, options=task_options)
    task.ctx.cfg.inference.options = inference_options
    kwargs = task.generate_kwargs()
    expected = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample,
                **({"min_new_tokens": min_new_tokens} if min_new_tokens else {}), **task_options,
                **inference_options}
    clock = kwargs.pop("stopping_criteria")
    assert kwargs == expected
    assert isinstance(clock[0], FirstTokenClock) and clock[0].times is task.ctx.extra[FIRST_TOKEN_TIMES]


@settings(max_examples=30)
@given(prompts=st.lists(PROMPT, min_size=1, max_size=4), max_new_tokens=st.integers(1, 64), options=OPTIONS)
def test_a_prompt_costs_its_tokens_plus_the_new_tokens_generate_will_make(prompts, max_new_tokens, options,
                                                                          tokenizer):
    task = make_task(TextGeneration, None, tokenizer, max_new_tokens=max_new_tokens)
    task.ctx.cfg.inference.options = options
    new = options.get("max_new_tokens", max_new_tokens)
    assert task.token_costs(prompts) == [len(tokenizer(p)["input_ids"]) + new for p in prompts]


@pytest.mark.parametrize("cls", [Summarization, Translation])
@pytest.mark.parametrize("method", [None, "seq2seq", "causal", "nli"])
@pytest.mark.parametrize("encoder_decoder", [False, True])
def test_summarization_and_translation_load_seq2seq_or_causal_by_method_and_model(cls, method,
                                                                                  encoder_decoder):
    model_config = SimpleNamespace(is_encoder_decoder=encoder_decoder,
                                   model_type="t5" if encoder_decoder else "gpt2")
    task_cfg = config(cls.name, method=method).task
    chosen = method or ("seq2seq" if encoder_decoder else "causal")
    if chosen == "causal" or (chosen == "seq2seq" and encoder_decoder):
        expected = "AutoModelForSeq2SeqLM" if chosen == "seq2seq" else "AutoModelForCausalLM"
        assert cls(task_cfg).choose_auto_class(model_config, task_cfg) == expected
        return
    with pytest.raises(ExperimentError) as info:
        cls(task_cfg).choose_auto_class(model_config, task_cfg)
    assert_one_line(info.value, f"task.method={method}")


@given(text=st.text(max_size=30), source=st.sampled_from([None, "en", "de", "xx"]),
       target=st.sampled_from([None, "fr", "ro"]),
       template=st.sampled_from([None, "{text}", "Translate {source} to {target}: {text}",
                                 "{text} ({target})"]))
def test_a_causal_prompt_is_the_template_filled_with_the_text_and_language_names(text, source, target,
                                                                                 template):
    task = Translation(config("translation", source_lang=source, target_lang=target, prompt=template).task)
    expected = (template or "{text}").replace("{source}", language_name(source)).replace(
        "{target}", language_name(target)).replace("{text}", text)
    assert task.format_prompt(text) == expected


@settings(max_examples=40)
@given(words=st.lists(WORDS, min_size=1, max_size=40), limit=st.integers(1, 20))
def test_a_source_longer_than_the_input_limit_is_cut_to_its_first_tokens(words, limit, tokenizer):
    text = " ".join(words)
    task = make_task(Summarization, None, tokenizer, max_length=limit)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    cut = task._truncate(text)
    if len(ids) <= limit:
        assert cut is text
    else:
        assert tokenizer(cut, add_special_tokens=False)["input_ids"] == ids[:limit]


def _model(model_type="t5", params=None):
    return SimpleNamespace(config=SimpleNamespace(model_type=model_type, task_specific_params=params,
                                                  is_encoder_decoder=model_type == "t5"))


@pytest.mark.parametrize("prefix", [None, "", "digest: "])
def test_a_task_prefix_wins_else_the_model_s_task_specific_prefix(prefix):
    params = {"summarization": {"prefix": "summarize: "}, "translation_en_to_de": {"prefix": "en>de: "}}
    summarize = make_task(Summarization, _model(params=params), None, prefix=prefix)
    translate = make_task(Translation, _model(params=params), None, prefix=prefix, source_lang="en",
                          target_lang="de")
    assert summarize.prefix() == ("summarize: " if prefix is None else prefix)
    assert translate.prefix() == ("en>de: " if prefix is None else prefix)


@pytest.mark.parametrize("model_type, expected", [("t5", "translate English to French: "), ("bart", "")])
def test_t5_without_a_translation_prefix_gets_the_t5_instruction(model_type, expected):
    task = make_task(Translation, _model(model_type, params={}), None, source_lang="en", target_lang="fr")
    assert task.task_params_key() == "translation_en_to_fr" and task.prefix() == expected


@given(row=st.dictionaries(st.sampled_from(["en", "de", "text", "sentence", "label", "target"]),
                           st.text(min_size=1, max_size=5), min_size=1, max_size=5))
def test_translation_rows_read_the_source_and_target_language_columns_first(row):
    task = Translation(config("translation", source_lang="en", target_lang="de").task)
    if "en" in row:
        assert task.from_record(row) == row["en"]
    elif {"text", "sentence"} & set(row):
        assert task.from_record(row) == row["text" if "text" in row else "sentence"]
    reference = row.get("de", row.get("label", row.get("target")))
    assert task.reference_from_record(row) == reference


def _generate(task, batch):
    import torch

    with torch.no_grad():
        return task.manual(batch)


@settings(max_examples=8)
@given(batch=st.lists(PROMPT, min_size=2, max_size=4), name=st.sampled_from(["gpt2", "llama"]))
def test_a_left_padded_batch_generates_what_each_prompt_generates_alone(batch, name, tiny, left_tokenizer):
    task = make_task(TextGeneration, tiny(name), left_tokenizer, max_new_tokens=4, chat=False)
    assert left_tokenizer.padding_side == "left"
    together = _generate(task, batch)
    for prompt, output in zip(batch, together):
        assert _generate(task, [prompt]) == [output] and set(output[0]) == {"generated_text"}
    assert len(task.ctx.extra[FIRST_TOKEN_TIMES]) == 1 + len(batch)  # one first token per generate() call


def test_seq2seq_outputs_are_summary_texts(tiny, tokenizer):
    task = make_task(Summarization, tiny("t5"), tokenizer, max_new_tokens=3)
    outputs = _generate(task, ["a long article about the weather", "short"])
    assert [list(o[0]) for o in outputs] == [["summary_text"]] * 2
    assert task.method_name() == "seq2seq" and not task.has_pipeline and task.pipeline_name() is None
    assert all(task.output_text(o) == o[0]["summary_text"] for o in outputs)


@pytest.mark.parametrize("cls", [Summarization, Translation, TextGeneration])
def test_an_encoder_only_model_does_not_train_a_generation_task(cls, tiny):
    cfg = config(cls.name)
    with pytest.raises(ExperimentError) as info:
        cls(cfg.task).setup_training(tiny("mlm").config, cfg)
    assert_one_line(info.value, f"task={cls.name} needs a model that generates", "encoder-only 'bert'")


@pytest.mark.parametrize("name, shift", [("t5", False), ("gpt2", True), ("llama", True)])
def test_causal_models_train_on_shifted_labels_and_seq2seq_models_do_not(name, shift, tiny):
    cfg = config("summarization")
    task = Summarization(cfg.task)
    task.setup_training(tiny(name).config, cfg)
    assert task.shift_labels is shift
    assert task.train_auto_class == ("AutoModelForCausalLM" if shift else "AutoModelForSeq2SeqLM")


def test_text_generation_refuses_an_encoder_decoder_model(tiny):
    cfg = config("text-generation")
    task = TextGeneration(cfg.task)
    with pytest.raises(ExperimentError) as info:
        task.setup_training(tiny("t5").config, cfg)
    assert_one_line(info.value, "decoder-only (causal)", "task=summarization")
    with pytest.raises(ExperimentError) as info:
        task.check_model(tiny("t5"), None, cfg.task)
    assert_one_line(info.value, "decoder-only (causal)")


def _padding_cfg(name, padding_free, response=None):
    cfg = config(name)
    return dataclasses.replace(cfg, collator=dataclasses.replace(cfg.collator, padding_free=padding_free),
                               dataset=dataclasses.replace(cfg.dataset, response_column=response))


@pytest.mark.parametrize("padding_free", ["true", "false"])
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("response", [None, "answer"])
def test_padding_free_flattens_only_causal_prompt_target_rows(padding_free, shift, response):
    for cls in (Summarization, TextGeneration):
        cfg = _padding_cfg(cls.name, padding_free, response)
        task = cls(cfg.task)
        task.shift_labels = shift
        if padding_free == "true" and not shift:
            with pytest.raises(ExperimentError) as info:
                task.padding_free(cfg)
            assert_one_line(info.value, "encoder-decoder model", "collator.padding_free=false")
            continue
        has_padding = cls is Summarization or response is not None  # LM text blocks have none
        assert task.padding_free(cfg) is (padding_free == "true" and has_padding)


@pytest.mark.parametrize("padding_free", ["true", "auto"])
def test_a_model_that_mixes_flattened_examples_trains_padded_or_stops_in_one_line(padding_free, tiny):
    cfg = _padding_cfg("text-generation", padding_free)
    task = TextGeneration(cfg.task)
    assert task.flattening_works(tiny("opt"), cfg)  # nothing flattened: nothing to check
    task.flattened = True
    assert task.flattening_works(tiny("llama"), cfg)  # position ids keep the examples apart
    if padding_free == "auto":
        assert task.flattening_works(tiny("opt"), cfg) is False
        return
    with pytest.raises(ExperimentError) as info:
        task.flattening_works(tiny("opt"), cfg)
    assert_one_line(info.value, "(opt) mixes flattened examples", "collator.padding_free=false")


@pytest.mark.parametrize("cls, output_key", [(Summarization, "summary_text"),
                                             (Translation, "translation_text")])
def test_quality_and_rows_score_only_items_with_a_reference(cls, output_key):
    task = cls(config(cls.name).task)
    texts = ["the cat sat on the mat", "a dog ran in the park", "hello world"]
    references = ["the cat sat on a mat", None, "hello there world"]
    outputs = [[{output_key: t}] for t in texts]
    items = [Item(f"e{n}", "source", r) for n, r in enumerate(references)]
    scores = task.quality(outputs, references)
    assert scores == pytest.approx(task.quality([outputs[0], outputs[2]], [references[0], references[2]]))
    metrics, rows = task.example_rows(items, outputs)
    rows = list(rows)
    assert [(r["id"], r["prediction"], r["reference"]) for r in rows] == [("e0", texts[0], references[0]),
                                                                          ("e2", texts[2], references[2])]
    assert recompute(rows, metrics) == pytest.approx({k: scores[k] for k in metrics})
    assert task.quality(outputs[1:2], [None]) == {} and task.example_rows(items[1:2], outputs[1:2]) is None


@settings(max_examples=20)
@given(examples=st.integers(1, 6), data=st.data())
def test_eval_rows_carry_token_losses_for_all_and_the_generation_for_those_generated(examples, data):
    import torch

    generated = data.draw(st.integers(0, examples))
    cfg = config("translation")
    task = Translation(cfg.task)
    items = [Item(f"ex{n}", f"source {n}", f"the reference {n}") for n in range(examples)]
    outputs = [[{"translation_text": f"the output {n}"}] for n in range(generated)]
    task.generated = (items[:generated], outputs)
    columns = {"loss_sum": torch.arange(examples, dtype=torch.float64) + 1.5,
               "tokens": torch.arange(examples, dtype=torch.long) + 2}
    records = task.eval_records(columns, {}, TrainingData(None, None, items), cfg)
    rows = list(records.rows)
    assert [row["id"] for row in rows] == [item.id for item in items]
    for n, row in enumerate(rows):
        assert row["stats"]["loss"] == [n + 1.5, n + 2]
        if n < generated:
            assert (row["prediction"], row["reference"]) == (f"the output {n}", f"the reference {n}")
            assert {"bleu", "chrf"} <= set(row["stats"])
        else:
            assert row["prediction"] is None and set(row["stats"]) == {"loss", "perplexity"}
    assert set(records.metrics) == {"loss", "perplexity"} | ({"bleu", "chrf"} if generated else set())
    assert recompute(rows, {"loss": records.metrics["loss"]})["loss"] == pytest.approx(
        float(columns["loss_sum"].sum() / columns["tokens"].sum()))
