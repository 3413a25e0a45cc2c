"""Training's final evaluation writes eval_predictions.jsonl: one row per eval example with its stable id
(the dataset's idx / id), and every metric recomputed from the rows equals metrics.json's, on both backends
and for each task family that evaluates against references."""
from __future__ import annotations

import json

import pytest

from experiments.metrics.examples import EVAL_PREDICTIONS_FILE, read_rows, recompute

SHORT = ["model=local", "dataset.max_train_samples=32", "tokenizer.max_length=32", "trainer.per_device_batch_size=8",
         "trainer.max_steps=2", "trainer.save_model=false", "logger=csv", "trainer.mixed_precision=no",
         "trainer.eval_generate_samples=4"]


def _train(tmp_path, name, *overrides):
    from experiments.config.validate import compose, to_typed
    from experiments.runs import start_run
    from experiments.train import train

    run_dir = tmp_path / name
    composed = compose([*SHORT, *overrides, f"paths.output_dir={run_dir}"])
    start_run(composed, run_dir)  # config.yaml: what makes it a run dir for compare
    return train(to_typed(composed), run_dir), run_dir


def assert_recomputed(metrics, run_dir, approx=1e-6):
    """Every metric the records name equals metrics.json's final value, recomputed from the rows."""
    entry = metrics["eval_predictions"]
    assert json.loads((run_dir / "metrics.json").read_text())["eval_predictions"] == entry
    rows = list(read_rows(run_dir / EVAL_PREDICTIONS_FILE))
    assert entry["examples"] == len(rows) > 0
    values = recompute(rows, entry["metrics"])
    assert values and set(values) == set(entry["metrics"])
    for name, value in values.items():
        assert value == pytest.approx(metrics["final"][entry["metric_prefix"] + name], rel=approx, abs=1e-9), name
    return rows, entry


@pytest.fixture(scope="module")
def mrpc_runs(tiny_models, shared_data, tmp_path_factory):
    """The same short MRPC fine-tune on both backends (a different seed each)."""
    root = tmp_path_factory.mktemp("mrpc")
    return {backend: _train(root, backend, "dataset=mrpc", f"paths.mirror={shared_data}", "dataset.max_eval_samples=24",
                            f"trainer={backend}", f"trainer.seed={seed}", f"model.name_or_path={tiny_models['classifier']}")
            for backend, seed in (("accelerate", 1), ("hf_trainer", 2))}


@pytest.mark.parametrize("backend", ["accelerate", "hf_trainer"])
def test_mrpc_records_keep_glue_ids_and_recompute_accuracy_and_f1(mrpc_runs, shared_data, backend):
    from experiments.config.validate import compose, to_typed
    from experiments.data.sources import load_raw

    metrics, run_dir = mrpc_runs[backend]
    rows, entry = assert_recomputed(metrics, run_dir)
    assert entry["eval_set"] == "mrpc:validation" and len(rows) == metrics["num_eval_samples"] == 24
    assert {"accuracy", "f1"} <= set(entry["metrics"]) and entry["metrics"]["f1"]["statistic"] == "binary_f1"
    assert ("loss" in entry["metrics"]) == (backend == "accelerate")  # the Trainer's loss: a mean of batch means
    names = ("not_equivalent", "equivalent")
    assert all(row["reference"] in names and row["prediction"] in names for row in rows)
    raw = load_raw(to_typed(compose(["dataset=mrpc", f"paths.mirror={shared_data}"])).dataset, str(shared_data))
    assert [row["id"] for row in rows] == [str(i) for i in raw["validation"]["idx"][:24]]


def test_two_backends_compare_example_by_example(mrpc_runs, capsys):
    from experiments.report.compare import main

    a, b = mrpc_runs["accelerate"][1], mrpc_runs["hf_trainer"][1]
    assert main([str(a), str(b), "--json", "--resamples", "500"]) == 0
    result = json.loads(capsys.readouterr().out)["metrics"]
    assert {"accuracy", "f1"} <= set(result) and "loss" not in result  # one run records the loss: not paired
    assert result["accuracy"]["n_examples"] == 24 and "mcnemar_p" in result["accuracy"]


def test_stsb_regression_recomputes_pearson_and_mse_and_names_spearman(tiny_models, shared_data, tmp_path):
    metrics, run_dir = _train(tmp_path, "stsb", "dataset=stsb", f"paths.mirror={shared_data}",
                              "dataset.max_eval_samples=24", f"model.name_or_path={tiny_models['classifier']}")
    _, entry = assert_recomputed(metrics, run_dir, approx=1e-5)
    assert {"pearson", "mse", "loss"} <= set(entry["metrics"]) and "spearmanr" in entry["not_recomputed"]


FAMILIES = {  # (tiny model, overrides): every family that evaluates against references, and a language model
    "question-answering": ("qa", ["task=question-answering", "dataset=squad", "dataset.train_split=validation",
                                  "dataset.eval_split=null", "dataset.split_by=title", "dataset.max_eval_samples=8",
                                  "task.max_length=128", "task.doc_stride=48"]),
    "summarization": ("t5", ["task=summarization", "dataset=xsum", "dataset.train_split=test", "dataset.eval_split=null",
                             "dataset.max_eval_samples=8", "task.max_length=64", "task.max_new_tokens=8"]),
    "translation": ("gpt2", ["task=translation", "dataset=multi30k", "dataset.train_split=validation",
                             "dataset.eval_split=test", "dataset.max_eval_samples=8", "task.max_new_tokens=8"]),
    "text-generation": ("gpt2", ["task=text-generation", "dataset=bbc_news", "dataset.max_eval_samples=8",
                                 "task.max_length=32"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_recomputes_its_metrics_from_the_records(family, tiny_models, shared_data, tmp_path):
    model, overrides = FAMILIES[family]
    metrics, run_dir = _train(tmp_path, family, *overrides, f"model.name_or_path={tiny_models[model]}",
                              f"paths.mirror={shared_data}")
    rows, entry = assert_recomputed(metrics, run_dir, approx=1e-5)
    expected = {"question-answering": {"exact_match", "f1"}, "summarization": {"rouge1", "rougeL", "loss"},
                "translation": {"bleu", "chrf", "perplexity"}, "text-generation": {"loss", "perplexity"}}[family]
    assert expected <= set(entry["metrics"])
    if family != "question-answering":  # QA evaluates windows of contexts; its rows are questions
        assert len(rows) == metrics["num_eval_samples"]
    if family in ("summarization", "translation"):  # generated for the first eval_generate_samples examples
        assert sum("prediction" in row and row["prediction"] is not None for row in rows) == 4


def test_mode_infer_on_best_pairs_with_the_training_run(tiny_models, shared_data, tmp_path, capsys):
    """The documented way to records for an older run: mode=infer on its best/ over the same split."""
    from experiments.config.validate import compose, to_typed
    from experiments.infer import infer
    from experiments.report.compare import main
    from experiments.runs import start_run

    _, trained = _train(tmp_path, "trained", "dataset=mrpc", f"paths.mirror={shared_data}", "trainer.save_model=true",
                        "dataset.max_eval_samples=24", f"model.name_or_path={tiny_models['classifier']}")
    composed = compose(["mode=infer", "inference.progress=false", "dataset=mrpc", f"paths.mirror={shared_data}",
                        "model=local", f"model.name_or_path={trained / 'best'}", "inference.max_samples=24"])
    start_run(composed, tmp_path / "inferred")
    infer(to_typed(composed), tmp_path / "inferred")
    assert main([str(trained), str(tmp_path / "inferred"), "--json", "--resamples", "500"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval_set"] == "mrpc:validation" and out["metrics"]["accuracy"]["n_examples"] == 24
    assert "binary_f1" in out["not_tested"]["f1"]  # training's F1 is GLUE's binary one, inference's the macro one
