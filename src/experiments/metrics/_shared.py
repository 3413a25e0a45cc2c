"""What the bundled metric scripts share: MetricInfo assembly, input features, citations, compute wrappers.

Why the scripts import this absolutely (``from experiments.metrics._shared import ...``): ``evaluate.load``
copies only ``<folder>/<name>.py`` into its module cache and imports that copy. A relative import
(``from .x import y``) makes evaluate copy ``x.py`` from the metric's *own* folder, so a shared file would
have to be repeated in every folder; a ``# From: PATH`` import is resolved against the working directory,
which breaks runs started elsewhere; and a local module gets no additional files. An absolute import is a
"library" import to evaluate: it only checks that it imports, and the cached copy then runs against this
live module (the package is installed, editable), so editing this file needs no cache flush.
Only the scripts import this module, so importing ``experiments.metrics`` still does not import `evaluate`.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import datasets
import evaluate
import numpy as np
import yaml

BIBLIOGRAPHY = Path(__file__).with_name("citations.yaml")
SKLEARN_DOCS = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.{}.html"
SCIPY_DOCS = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.{}.html"


@functools.cache
def _entries() -> dict[str, str]:
    """BibTeX entries by key, read once per process."""
    return yaml.safe_load(BIBLIOGRAPHY.read_text(encoding="utf-8"))


def citation(*keys: str) -> str:
    """The BibTeX of ``keys``, in order: entries are data in citations.yaml, written once however often cited."""
    return "".join(_entries()[key] for key in keys)


def pair_features(value: str | datasets.Value | datasets.Sequence) -> datasets.Features:
    """Predictions and references of one type (a dtype name or a feature): every label or score metric."""
    feature = datasets.Value(value) if isinstance(value, str) else value
    return datasets.Features({"predictions": feature, "references": feature})


def text_features(references_id: str | None = None) -> list[datasets.Features]:
    """Text against one reference, else against a list of them: evaluate tries the options in this order."""
    text = datasets.Value("string", id="sequence")
    return [
        datasets.Features({"predictions": text, "references": text}),
        datasets.Features({"predictions": text, "references": datasets.Sequence(text, id=references_id)}),
    ]


class BundledMetric(evaluate.Metric, metaclass=abc.ABCMeta):
    """An `evaluate.Metric` whose MetricInfo and docstring come from class attributes, assembled once here.

    It stays abstract until a subclass sets DESCRIPTION, INPUTS and CITATION, because `evaluate` takes the
    first non-abstract `EvaluationModule` class in a script's namespace as *the* metric: this base and the
    families below, imported into that namespace ahead of the script's own class, must be skipped.
    """

    FEATURES: ClassVar[datasets.Features | list[datasets.Features]]
    LINKS: ClassVar[dict[str, Any]] = {}  # further MetricInfo fields: codebase_urls, reference_urls, format

    @property
    @abc.abstractmethod
    def DESCRIPTION(self) -> str:  # noqa: N802 - a class constant in subclasses
        """What the metric measures (MetricInfo.description)."""

    @property
    @abc.abstractmethod
    def INPUTS(self) -> str:  # noqa: N802
        """Its arguments, results and examples (MetricInfo.inputs_description)."""

    @property
    @abc.abstractmethod
    def CITATION(self) -> str:  # noqa: N802
        """BibTeX for the method or the library computing it (MetricInfo.citation)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Prefix the class docstring with description and usage, as evaluate's metric scripts do for help()."""
        super().__init_subclass__(**kwargs)
        if isinstance(getattr(cls, "DESCRIPTION", None), str):
            evaluate.utils.file_utils.add_start_docstrings(cls.DESCRIPTION, cls.INPUTS)(cls)

    def _features(self) -> datasets.Features | list[datasets.Features]:
        """The accepted inputs; overridden where they depend on ``self.config_name``."""
        return self.FEATURES

    def _links(self) -> dict[str, Any]:
        """Extra MetricInfo fields; overridden where they follow from the wrapped function."""
        return self.LINKS

    def _info(self) -> evaluate.MetricInfo:
        """The MetricInfo that every module used to spell out by hand."""
        features = self._features()  # first: it may reject the config
        return evaluate.MetricInfo(
            description=self.DESCRIPTION,
            citation=self.CITATION,
            inputs_description=self.INPUTS,
            features=features,
            **self._links(),
        )


class SklearnMetric(BundledMetric):
    """One ``sklearn.metrics`` function of (references, predictions) under one result key."""

    CITATION = citation("scikit-learn")
    SCORE: ClassVar[Callable[..., Any]]  # wrap in staticmethod()
    KEY: ClassVar[str]
    MULTILABEL: ClassVar[bool] = False  # accept label vectors under the ``multilabel`` config

    def _features(self) -> datasets.Features:
        """Integer labels, or label vectors where the metric supports the ``multilabel`` config."""
        label = datasets.Value("int32")
        multilabel = self.MULTILABEL and self.config_name == "multilabel"
        return pair_features(datasets.Sequence(label) if multilabel else label)

    def _links(self) -> dict[str, Any]:
        """The scikit-learn page of the function doing the work."""
        return {"reference_urls": [SKLEARN_DOCS.format(self.SCORE.__name__)]}

    def _compute(self, predictions, references, **options) -> dict[str, Any]:
        """Options go to sklearn as they are; a float, or an array where sklearn gives one per class."""
        score = self.SCORE(references, predictions, **options)
        return {self.KEY: float(score) if np.size(score) == 1 else np.asarray(score)}


class CorrelationMetric(BundledMetric):
    """A ``scipy.stats`` correlation of predictions with references, optionally with its p-value."""

    CITATION = citation("2020SciPy-NMeth")
    FEATURES = pair_features("float")
    STATISTIC: ClassVar[Callable[..., Any]]  # wrap in staticmethod()
    KEY: ClassVar[str]
    PVALUE_KEY: ClassVar[str]

    def _links(self) -> dict[str, Any]:
        """The SciPy page of the function doing the work."""
        return {"reference_urls": [SCIPY_DOCS.format(self.STATISTIC.__name__)]}

    def _compute(self, predictions, references, return_pvalue: bool = False) -> dict[str, float]:
        """The coefficient, plus the p-value only on request so that the default result is one number."""
        statistic, pvalue = self.STATISTIC(references, predictions)
        if return_pvalue:
            return {self.KEY: float(statistic), self.PVALUE_KEY: float(pvalue)}
        return {self.KEY: float(statistic)}


class CorpusMetric(BundledMetric):
    """A ``sacrebleu.metrics`` corpus score (BLEU, chrF) over evaluate's per-prediction references."""

    FEATURES = text_features(references_id="references")
    SCORER: ClassVar[type]
    NAME: ClassVar[str]  # for error messages
    RESULT: ClassVar[dict[str, Callable[[Any], Any]]]  # the score's fields to return, with their types

    def _compute(self, predictions, references, **options) -> dict[str, Any]:
        """Options go to the sacrebleu class as they are; the result keeps only RESULT's fields."""
        streams = reference_streams(references, self.NAME)
        output = self.SCORER(**options).corpus_score(list(predictions), streams)
        return {key: cast(getattr(output, key)) for key, cast in self.RESULT.items()}


def reference_streams(references: Sequence[Any], metric: str) -> list[list[str]]:
    """Turn per-prediction references (what evaluate hands over) into sacrebleu's per-position streams."""
    references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    per_prediction = len(references[0])
    if any(len(refs) != per_prediction for refs in references):
        raise ValueError(f"{metric} requires the same number of references for each prediction")
    return [[refs[i] for refs in references] for i in range(per_prediction)]
