"""Longest modules first: the order ``make test`` hands modules to its workers.

``pytest -n N --dist loadscope`` gives each worker whole modules (so a module's fixtures, a cluster or a trained
run, are built once), in collection order (``--no-loadscope-reorder``; xdist's own reorder puts the modules with
the most tests first, which says little about their time). A long module that starts last runs alone at the end
while the other workers sit idle: the MRPC comparison's fine-tunes were 7 of the 48 minutes with one core idle.
Ordering modules longest first (the classic longest-processing-time rule) bounds that tail by the shortest
modules instead. A module's time is what it took in the last run that ran it (kept in pytest's cache, the
``.pytest_cache`` folder); a module never timed (a fresh clone) is estimated from its number of tests marked
``slow``. The order changes only when tests run, never what they assert.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List

import pytest

CACHE_KEY = "experiments/module_seconds"
SLOW_TEST_GUESS_S = 30.0  # a test marked slow takes more than ~20 s (pyproject's marker)
FAST_TEST_GUESS_S = 0.5


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def estimated_seconds(items: List[pytest.Item], measured: Dict[str, float]) -> Dict[str, float]:
    """Each module's expected time: measured when known, else guessed from its slow tests."""
    guess: Dict[str, float] = defaultdict(float)
    for item in items:
        slow = item.get_closest_marker("slow") is not None
        guess[module_of(item.nodeid)] += SLOW_TEST_GUESS_S if slow else FAST_TEST_GUESS_S
    return {module: float(measured.get(module, seconds)) for module, seconds in guess.items()}


def order_longest_first(items: List[pytest.Item], measured: Dict[str, float]) -> None:
    """Sort ``items`` in place: modules by expected time, longest first; a module's tests keep their order."""
    seconds = estimated_seconds(items, measured)
    first_seen = {module: index for index, module in enumerate(dict.fromkeys(module_of(i.nodeid) for i in items))}
    items.sort(key=lambda item: (-seconds[module_of(item.nodeid)], first_seen[module_of(item.nodeid)]))


class ModuleClock:
    """Adds up each module's setup, call and teardown time from the test reports (in the process that
    receives every report: the xdist controller, or pytest itself without xdist)."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = defaultdict(float)

    def add(self, report: pytest.TestReport) -> None:
        self.seconds[module_of(report.nodeid)] += report.duration

    def save(self, cache) -> None:
        if cache is None or not self.seconds:
            return
        known = dict(cache.get(CACHE_KEY, {}))
        known.update({module: round(seconds, 2) for module, seconds in self.seconds.items()})
        cache.set(CACHE_KEY, known)
