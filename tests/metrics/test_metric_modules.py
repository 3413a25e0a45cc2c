"""The bundled `evaluate` metric modules agree with the libraries they wrap and load offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import scipy.stats
from rouge_score import rouge_scorer
from sklearn import metrics as skm

from experiments import metrics

# `evaluate` is imported lazily by the tests, so this still takes effect when the file runs alone.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")

GLUE_KEYS = {
    "mrpc": {"accuracy", "f1"},
    "qqp": {"accuracy", "f1"},
    "sst2": {"accuracy"},
    "rte": {"accuracy"},
    "mnli": {"accuracy"},
    "mnli_matched": {"accuracy"},
    "mnli_mismatched": {"accuracy"},
    "qnli": {"accuracy"},
    "wnli": {"accuracy"},
    "hans": {"accuracy"},
    "cola": {"matthews_correlation"},
    "stsb": {"pearson", "spearmanr"},
}

SUMMARIES = [
    "The cat was found under the bed after a long search.",
    "Stocks rallied on Friday as investors cheered the latest jobs report.",
    "The committee approved the new budget with minor amendments.",
    "Heavy rain caused flooding across several northern towns.",
]
REFERENCES = [
    "The cat was under the bed.",
    "Markets rose on Friday after a strong jobs report.",
    "The new budget was approved by the committee.",
    "Several towns in the north were flooded after heavy rainfall.",
]
ALT_REFERENCES = [
    "After searching for a long time, they found the cat beneath the bed.",
    "Investors cheered the jobs report and stocks climbed on Friday.",
    "With a few amendments, the committee passed the budget.",
    "Flooding hit northern towns following heavy rain.",
]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def labels(rng: np.random.Generator, num_labels: int, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Random (predictions, references) label ids."""
    return rng.integers(0, num_labels, n), rng.integers(0, num_labels, n)


def test_available_lists_every_module() -> None:
    assert metrics.available() == sorted(
        [
            "accuracy",
            "chrf",
            "f1",
            "glue",
            "matthews_correlation",
            "pearsonr",
            "rouge",
            "sacrebleu",
            "spearmanr",
            "squad",
        ]
    )
    for name in metrics.available():
        assert (metrics.METRICS_DIR / name / f"{name}.py").is_file()


def test_package_import_does_not_import_evaluate() -> None:
    code = (
        "import sys, experiments.metrics; assert 'evaluate' not in sys.modules, 'evaluate imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_metric_names_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'bleu' \(available: accuracy, chrf, f1, glue,"):
        metrics.load("bleu")


def test_metric_info_is_filled_in() -> None:
    for name in metrics.available():
        module = metrics.load(name, "mrpc" if name == "glue" else None)
        assert module.description.strip() and module.citation.strip() and module.features


def test_accuracy_matches_sklearn(rng: np.random.Generator) -> None:
    preds, refs = labels(rng, 4)
    weights = rng.random(len(refs))
    accuracy = metrics.load("accuracy")
    assert accuracy.compute(predictions=preds, references=refs) == {
        "accuracy": pytest.approx(skm.accuracy_score(refs, preds))
    }
    result = accuracy.compute(predictions=preds, references=refs, normalize=False, sample_weight=weights)
    assert result["accuracy"] == pytest.approx(
        skm.accuracy_score(refs, preds, normalize=False, sample_weight=weights)
    )


@pytest.mark.parametrize(
    "num_labels, kwargs",
    [
        (2, {}),
        (2, {"pos_label": 0}),
        (4, {"average": "macro"}),
        (4, {"average": "micro"}),
        (4, {"average": "weighted", "labels": [0, 1, 2]}),
    ],
)
def test_f1_matches_sklearn(rng: np.random.Generator, num_labels: int, kwargs: dict) -> None:
    preds, refs = labels(rng, num_labels)
    result = metrics.load("f1").compute(predictions=preds, references=refs, **kwargs)
    assert isinstance(result["f1"], float)
    assert result["f1"] == pytest.approx(skm.f1_score(refs, preds, **kwargs))


def test_f1_per_class(rng: np.random.Generator) -> None:
    preds, refs = labels(rng, 3)
    result = metrics.load("f1").compute(predictions=preds, references=refs, average=None)
    np.testing.assert_allclose(result["f1"], skm.f1_score(refs, preds, average=None))


def test_matthews_correlation_matches_sklearn(rng: np.random.Generator) -> None:
    preds, refs = labels(rng, 3)
    refs[:40] = preds[:40]  # make the correlation clearly non-zero
    result = metrics.load("matthews_correlation").compute(predictions=preds, references=refs)
    assert result == {"matthews_correlation": pytest.approx(skm.matthews_corrcoef(refs, preds))}


@pytest.mark.parametrize(
    "name, scipy_fn, pvalue_key",
    [("pearsonr", scipy.stats.pearsonr, "p-value"), ("spearmanr", scipy.stats.spearmanr, "spearmanr_pvalue")],
)
def test_correlations_match_scipy(rng: np.random.Generator, name: str, scipy_fn, pvalue_key: str) -> None:
    refs = rng.normal(size=50)
    preds = refs + rng.normal(scale=0.7, size=50)
    statistic, pvalue = scipy_fn(refs, preds)
    module = metrics.load(name)
    assert module.compute(predictions=preds, references=refs) == {name: pytest.approx(statistic, rel=1e-5)}
    result = module.compute(predictions=preds, references=refs, return_pvalue=True)
    assert result == {name: pytest.approx(statistic, rel=1e-5), pvalue_key: pytest.approx(pvalue, rel=1e-3)}


@pytest.mark.parametrize("config", sorted(GLUE_KEYS))
def test_glue_configs(rng: np.random.Generator, config: str) -> None:
    glue = metrics.load("glue", config)
    if config == "stsb":
        refs = rng.uniform(0, 5, 40)
        preds = refs + rng.normal(scale=1.0, size=40)
    else:
        preds, refs = labels(rng, 3 if config.startswith("mnli") else 2)
    result = glue.compute(predictions=preds, references=refs)
    assert set(result) == GLUE_KEYS[config]
    assert all(type(value) is float for value in result.values())
    expected = {
        "accuracy": lambda: skm.accuracy_score(refs, preds),
        "f1": lambda: skm.f1_score(refs, preds),
        "matthews_correlation": lambda: skm.matthews_corrcoef(refs, preds),
        "pearson": lambda: scipy.stats.pearsonr(preds, refs)[0],
        "spearmanr": lambda: scipy.stats.spearmanr(preds, refs)[0],
    }
    for key, value in result.items():
        assert value == pytest.approx(expected[key](), rel=1e-5), key


@pytest.mark.parametrize("config", [None, "mrpcc"])
def test_glue_unknown_config_names_the_allowed_ones(config: str | None) -> None:
    with pytest.raises(KeyError, match="select one of: cola, stsb, mrpc, qqp, sst2, rte, mnli, mnli_matched"):
        metrics.load("glue", config)


def squad_inputs(cases: list[tuple[str, list[str]]]) -> tuple[list[dict], list[dict]]:
    """SQuAD-format predictions and references from (prediction, gold answers) pairs."""
    predictions = [{"id": str(i), "prediction_text": pred} for i, (pred, _) in enumerate(cases)]
    references = [
        {"id": str(i), "answers": {"text": golds, "answer_start": [0] * len(golds)}}
        for i, (_, golds) in enumerate(cases)
    ]
    return predictions, references


@pytest.mark.parametrize(
    "prediction, golds, exact_match, f1",
    [
        # articles, case and punctuation are normalised away
        ("the Eiffel Tower", ["Eiffel Tower"], 100.0, 100.0),
        ("Eiffel tower!", ["The Eiffel Tower."], 100.0, 100.0),
        # tokens {in, paris, france} vs {paris}: P = 1/3, R = 1, F1 = 2 * (1/3) / (4/3) = 0.5
        ("in Paris France", ["Paris"], 0.0, 50.0),
        # best gold wins: vs "Paris, France" P = 2/3, R = 1 -> F1 = 0.8
        ("in Paris France", ["Lyon", "Paris, France"], 0.0, 80.0),
        # {denver, broncos, won} vs {broncos}: F1 = 0.5; vs {denver, broncos}: P = 2/3, R = 1 -> 0.8
        ("Denver Broncos won", ["Broncos", "the Denver Broncos"], 0.0, 80.0),
        ("1976", ["1975"], 0.0, 0.0),
    ],
)
def test_squad_hand_checked(prediction: str, golds: list[str], exact_match: float, f1: float) -> None:
    predictions, references = squad_inputs([(prediction, golds)])
    result = metrics.load("squad").compute(predictions=predictions, references=references)
    assert result == {"exact_match": pytest.approx(exact_match), "f1": pytest.approx(f1)}


def test_squad_averages_over_questions_and_unanswered_score_zero() -> None:
    predictions, references = squad_inputs(
        [("the Eiffel Tower", ["Eiffel Tower"]), ("in Paris France", ["Paris"]), ("unused", ["Rome"])]
    )
    predictions[2]["id"] = "not-a-question"  # leaves question "2" unanswered
    result = metrics.load("squad").compute(predictions=predictions, references=references)
    # EM: (100 + 0 + 0) / 3; F1: (100 + 50 + 0) / 3
    assert result == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx(50.0)}


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_matches_rouge_score(use_stemmer: bool) -> None:
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
    scores = [scorer.score(ref, pred) for ref, pred in zip(REFERENCES, SUMMARIES, strict=True)]
    rouge = metrics.load("rouge")
    result = rouge.compute(predictions=SUMMARIES, references=REFERENCES, use_stemmer=use_stemmer)
    assert result == {t: pytest.approx(np.mean([s[t].fmeasure for s in scores])) for t in types}
    per_example = rouge.compute(
        predictions=SUMMARIES, references=REFERENCES, use_stemmer=use_stemmer, use_aggregator=False
    )
    assert per_example == {t: pytest.approx([s[t].fmeasure for s in scores]) for t in types}


def test_rouge_multiple_references_use_score_multi() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"])
    refs = [list(pair) for pair in zip(REFERENCES, ALT_REFERENCES, strict=True)]
    expected = [scorer.score_multi(r, p) for r, p in zip(refs, SUMMARIES, strict=True)]
    result = metrics.load("rouge").compute(
        predictions=SUMMARIES, references=refs, rouge_types=["rouge1", "rougeL"]
    )
    assert result == {
        t: pytest.approx(np.mean([s[t].fmeasure for s in expected])) for t in ("rouge1", "rougeL")
    }


def test_sacrebleu_matches_corpus_bleu() -> None:
    refs = [list(pair) for pair in zip(REFERENCES, ALT_REFERENCES, strict=True)]
    expected = sacrebleu.corpus_bleu(SUMMARIES, [REFERENCES, ALT_REFERENCES])
    result = metrics.load("sacrebleu").compute(predictions=SUMMARIES, references=refs)
    assert result == {
        "score": pytest.approx(expected.score),
        "counts": expected.counts,
        "totals": expected.totals,
        "precisions": pytest.approx(expected.precisions),
        "bp": pytest.approx(expected.bp),
        "sys_len": expected.sys_len,
        "ref_len": expected.ref_len,
    }


def test_sacrebleu_options_and_single_references() -> None:
    expected = sacrebleu.corpus_bleu(
        SUMMARIES, [REFERENCES], lowercase=True, smooth_method="floor", tokenize="intl"
    )
    bleu = metrics.load("sacrebleu")
    kwargs = {"lowercase": True, "smooth_method": "floor", "tokenize": "intl"}
    assert bleu.compute(predictions=SUMMARIES, references=REFERENCES, **kwargs)["score"] == pytest.approx(
        expected.score
    )
    with pytest.raises(ValueError, match="same number of references"):
        bleu.compute(
            predictions=SUMMARIES[:2], references=[[REFERENCES[0]], [REFERENCES[1], ALT_REFERENCES[1]]]
        )


@pytest.mark.parametrize("word_order, beta", [(0, 2), (2, 2), (2, 1)])
def test_chrf_matches_sacrebleu(word_order: int, beta: int) -> None:
    refs = [list(pair) for pair in zip(REFERENCES, ALT_REFERENCES, strict=True)]
    expected = sacrebleu.metrics.CHRF(word_order=word_order, beta=beta).corpus_score(
        SUMMARIES, [REFERENCES, ALT_REFERENCES]
    )
    result = metrics.load("chrf").compute(
        predictions=SUMMARIES, references=refs, word_order=word_order, beta=beta
    )
    assert result == {
        "score": pytest.approx(expected.score),
        "char_order": 6,
        "word_order": word_order,
        "beta": beta,
    }


def test_evaluate_combine_over_local_modules(rng: np.random.Generator) -> None:
    import evaluate

    preds, refs = labels(rng, 2)
    combined = evaluate.combine([metrics.load("accuracy"), metrics.load("f1")])
    assert combined.compute(predictions=preds, references=refs) == {
        "accuracy": pytest.approx(skm.accuracy_score(refs, preds)),
        "f1": pytest.approx(skm.f1_score(refs, preds)),
    }


def test_for_classification_binary_task_from_logits(rng: np.random.Generator) -> None:
    logits = rng.normal(size=(40, 2))
    refs = rng.integers(0, 2, 40)
    result = metrics.for_classification("glue", "mrpc", num_labels=2, is_regression=False)(logits, refs)
    preds = logits.argmax(-1)
    assert result == {
        "accuracy": pytest.approx(skm.accuracy_score(refs, preds)),
        "f1": pytest.approx(skm.f1_score(refs, preds)),
    }
    assert all(type(value) is float for value in result.values())


def test_for_classification_multiclass_adds_macro_f1(rng: np.random.Generator) -> None:
    preds, refs = labels(rng, 3)
    expected = {
        "accuracy": pytest.approx(skm.accuracy_score(refs, preds)),
        "f1_macro": pytest.approx(skm.f1_score(refs, preds, average="macro")),
    }
    assert metrics.for_classification("glue", "mnli", 3, False)(preds, refs) == expected
    assert metrics.for_classification(None, None, 3, False)(list(preds), list(refs)) == expected


def test_for_classification_regression(rng: np.random.Generator) -> None:
    refs = rng.uniform(0, 5, 40)
    preds = (refs + rng.normal(size=40)).reshape(-1, 1)  # regression heads emit (n, 1)
    flat = preds.ravel()
    expected = {
        "pearson": pytest.approx(scipy.stats.pearsonr(flat, refs)[0], rel=1e-5),
        "spearmanr": pytest.approx(scipy.stats.spearmanr(flat, refs)[0], rel=1e-5),
        "mse": pytest.approx(skm.mean_squared_error(refs, flat)),
    }
    for task, config in [("glue", "stsb"), (None, None)]:
        result = metrics.for_classification(task, config, num_labels=1, is_regression=True)(preds, refs)
        assert result == expected
        assert all(type(value) is float for value in result.values())


def test_for_classification_rejects_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metric 'glu'"):
        metrics.for_classification("glu", "mrpc", 2, False)


def test_concurrent_processes_from_another_directory(tmp_path: Path) -> None:
    """Two processes started elsewhere load and compute at once, sharing a fresh module cache."""
    script = textwrap.dedent(
        """
        import json
        from experiments import metrics
        glue = metrics.load("glue", "mrpc")
        bleu = metrics.load("sacrebleu")
        print(json.dumps({
            "glue": glue.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]),
            "bleu": bleu.compute(predictions=["a b c d e"], references=[["a b c d e"]])["score"],
        }))
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HOME": str(tmp_path / "hf")}
    env.pop("PYTHONPATH", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    for output in outputs:
        result = json.loads(output.strip().splitlines()[-1])
        assert result["glue"] == {"accuracy": 0.75, "f1": pytest.approx(2 / 3)}
        assert result["bleu"] == pytest.approx(100.0)
