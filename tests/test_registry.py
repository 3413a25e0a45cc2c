"""experiments.registry: one entry per component, names in registration order, one-line errors, the docs' table."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.errors import ExperimentError
from experiments.registry import Registry


@dataclass(frozen=True)
class Traits:
    fast: bool = False


def _registry(names):
    registry = Registry("widget", "widgets.kind", Traits)
    for name in names:
        registry.register(name, f"the {name} widget", defaults={"size": 1})(lambda options, name=name: (name, options))
    return registry


names = st.lists(st.text("abcdefghij_", min_size=1, max_size=8), unique=True, max_size=6)


@given(names)
def test_names_are_the_registered_ones_in_order_and_each_builds_its_own(registered):
    registry = _registry(registered)
    assert registry.names() == tuple(registered) == tuple(entry.name for entry in registry)
    for name in registered:
        entry = registry[name]
        assert name in registry and entry.traits == Traits()
        assert entry.build(entry.options({"colour": "red"})) == (name, {"size": 1, "colour": "red"})
        assert entry.options({"size": 3}) == {"size": 3}  # the config's options win over our defaults


@given(names, st.text(min_size=1, max_size=12))
def test_an_unknown_name_is_one_line_naming_the_setting_and_every_choice(registered, asked):
    registry = _registry(registered)
    if asked in registered:
        return
    with pytest.raises(ExperimentError) as caught:
        registry[asked]
    message = str(caught.value)
    assert message.startswith(f"widgets.kind={asked}: choose one of ") and message.endswith(", ".join(registered))


def test_a_name_registered_twice_is_refused_and_an_entry_can_be_taken_away():
    registry = _registry(["a"])
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.register("a", "again")(lambda options: None)
    registry.register("b", "fast one", traits=Traits(fast=True))(lambda options: None)
    assert registry["b"].traits.fast
    registry.unregister("b")
    assert registry.names() == ("a",)


def test_the_defaults_of_an_entry_cannot_be_changed_through_it():
    entry = _registry(["a"])["a"]
    with pytest.raises(TypeError):
        entry.defaults["size"] = 2  # type: ignore[index]
    assert entry.options({}) == {"size": 1}


def test_the_table_has_a_row_per_entry_under_the_setting():
    assert _registry(["a", "b"]).table() == ("| `widgets.kind` | what it is |\n|---|---|\n"
                                              "| `a` | the a widget |\n| `b` | the b widget |\n")
