"""tests/scheduling.py: modules longest first, a module's tests together and in their order."""
from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st
from scheduling import (
    CACHE_KEY,
    FAST_TEST_GUESS_S,
    SLOW_TEST_GUESS_S,
    ModuleClock,
    module_of,
    order_longest_first,
)


@dataclass
class Item:
    nodeid: str
    slow: bool = False

    def get_closest_marker(self, name):
        return object() if name == "slow" and self.slow else None


@dataclass
class Cache:
    values: dict = field(default_factory=dict)

    def get(self, key, default):
        return self.values.get(key, default)

    def set(self, key, value):
        self.values[key] = value


def _items(layout):
    """[(module, [slow?, ...]), ...] -> items in collection order."""
    return [Item(f"tests/{module}.py::test_{n}", slow) for module, tests in layout for n, slow in enumerate(tests)]


layouts = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.lists(st.booleans(), min_size=1, max_size=5)),
                   min_size=1, max_size=8, unique_by=lambda entry: entry[0])


@given(layouts, st.dictionaries(st.sampled_from([f"tests/{m}.py" for m in "abcdefgh"]),
                                st.floats(0, 1000, allow_nan=False)))
def test_modules_run_longest_first_each_whole_and_in_order(layout, measured):
    items = _items(layout)
    before = list(items)
    order_longest_first(items, measured)
    assert sorted(i.nodeid for i in items) == sorted(i.nodeid for i in before)  # nothing lost or added
    modules = list(dict.fromkeys(module_of(i.nodeid) for i in items))
    blocks = [module_of(i.nodeid) for i in items]
    assert blocks == sorted(blocks, key=modules.index)  # each module's tests together
    for module in modules:  # and in their collected order
        assert [i for i in items if module_of(i.nodeid) == module] == [i for i in before if module_of(i.nodeid) == module]

    def expected(module):
        tests = dict(layout)[module.split("/")[1][:-3]]
        return measured.get(module, sum(SLOW_TEST_GUESS_S if s else FAST_TEST_GUESS_S for s in tests))

    assert [expected(m) for m in modules] == sorted((expected(m) for m in modules), reverse=True)


def test_a_module_never_timed_is_placed_by_its_slow_tests_and_a_timed_one_by_its_time():
    items = _items([("fast", [False] * 20), ("one_slow", [True]), ("timed", [False])])
    order_longest_first(items, {"tests/timed.py": 120.0})
    assert list(dict.fromkeys(module_of(i.nodeid) for i in items)) == ["tests/timed.py", "tests/one_slow.py",
                                                                       "tests/fast.py"]


def test_the_clock_adds_a_module_s_phases_and_keeps_modules_it_did_not_run():
    class Report:
        def __init__(self, nodeid, duration):
            self.nodeid, self.duration = nodeid, duration

    cache = Cache({CACHE_KEY: {"tests/old.py": 9.0, "tests/a.py": 1.0}})
    clock = ModuleClock()
    for phase_s in (0.5, 2.0, 0.25):
        clock.add(Report("tests/a.py::test_x", phase_s))
    clock.add(Report("tests/a.py::test_y[1]", 1.0))
    clock.save(cache)
    assert cache.values[CACHE_KEY] == {"tests/old.py": 9.0, "tests/a.py": 3.75}
