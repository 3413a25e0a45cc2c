"""The code the metric scripts share stays loadable the way `evaluate` loads them (see metrics/_shared.py)."""

from __future__ import annotations

import ast
import inspect

import pytest

from experiments import metrics


def script(name: str) -> ast.Module:
    """The syntax tree of a bundled metric script."""
    return ast.parse((metrics.METRICS_DIR / name / f"{name}.py").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", metrics.available())
def test_scripts_import_shared_code_absolutely(name: str) -> None:
    """evaluate copies a script alone into its cache: a relative import would look for a copy beside it."""
    tree = script(name)
    relative = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative, f"{name}.py imports relatively: {relative}"


@pytest.mark.parametrize("name", metrics.available())
def test_evaluate_picks_the_scripts_own_class(name: str) -> None:
    """evaluate runs the first non-abstract metric class in the namespace; imported bases come first."""
    classes = [node.name for node in script(name).body if isinstance(node, ast.ClassDef)]
    module = metrics.load(name, "mrpc" if name == "glue" else None)
    assert type(module).__name__ in classes


def test_shared_bases_are_abstract_so_evaluate_skips_them() -> None:
    from experiments.metrics import _shared

    for base in (
        _shared.BundledMetric,
        _shared.SklearnMetric,
        _shared.CorrelationMetric,
        _shared.CorpusMetric,
    ):
        assert inspect.isabstract(base), base.__name__


def test_citations_join_bibliography_entries_in_order() -> None:
    from experiments.metrics._shared import citation

    text = citation("popovic-2015-chrf", "popovic-2017-chrf")
    assert text.startswith("@inproceedings{popovic-2015-chrf,") and text.endswith("}\n")
    assert text.index("popovic-2015-chrf") < text.index("@inproceedings{popovic-2017-chrf,")
    with pytest.raises(KeyError):
        citation("no-such-entry")
