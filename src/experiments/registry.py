"""One registry per kind of component: each entry holds, in one place, its name, a one-line summary, our
defaults for its options, what the code that uses the kind needs to know about it (its *traits*) and its
builder.

A kind's registry is the one source of its names: the check of the config value, the error that lists the
choices and the table in the docs all read it, so adding a component is one registered entry (plus its YAML
where the kind has a config group) and nothing else to keep in step.

Why a typed registry and not Hydra's ``_target_`` instantiation: a component here is chosen by a short name
inside a setting (``hydra.sweeper.sampler=tpe``), and the name must be checked, with the choices listed, before
anything runs (a sweep's preflight); ``_target_`` would put import paths in the users' configs and fail only
when the object is built. A builder imports its library when it is called, so a registry is cheap to import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Generic, Iterator, Mapping, Tuple, TypeVar

from experiments.errors import ExperimentError

Builder = TypeVar("Builder", bound=Callable[..., Any])
Traits = TypeVar("Traits")


@dataclass(frozen=True)
class Entry(Generic[Builder, Traits]):
    """One component of a kind."""

    name: str
    summary: str
    build: Builder
    traits: Traits
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def options(self, given: Mapping[str, Any]) -> Dict[str, Any]:
        """The options it is built with: our defaults, then what the config gives."""
        return {**self.defaults, **given}


class Registry(Generic[Builder, Traits]):
    """The components of one kind, by name, in the order they were registered."""

    def __init__(self, kind: str, key: str, default_traits: Callable[[], Traits]) -> None:
        self.kind, self.key, self._default_traits = kind, key, default_traits
        self._entries: Dict[str, Entry[Builder, Traits]] = {}

    def register(self, name: str, summary: str, *, traits: Traits | None = None,
                 defaults: Mapping[str, Any] | None = None) -> Callable[[Builder], Builder]:
        """Decorator: register the builder under ``name`` (once: a second entry of one name is a bug)."""
        def add(build: Builder) -> Builder:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, summary, build, self._default_traits() if traits is None else traits,
                                        MappingProxyType(dict(defaults or {})))
            return build

        return add

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> Tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[Builder, Traits]]:
        return iter(list(self._entries.values()))

    def __getitem__(self, name: str) -> Entry[Builder, Traits]:
        """The entry called ``name``; an unknown name is one line naming the setting and the choices."""
        try:
            return self._entries[name]
        except KeyError:
            raise ExperimentError(f"{self.key}={name}: choose one of {', '.join(self._entries)}") from None

    def table(self) -> str:
        """The kind's table for the docs (Markdown), one row per entry."""
        rows = [f"| `{self.key}` | what it is |", "|---|---|"]
        rows += [f"| `{entry.name}` | {entry.summary} |" for entry in self]
        return "\n".join(rows) + "\n"
