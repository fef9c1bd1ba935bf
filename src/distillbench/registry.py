"""Things found by name: one ``Registry`` per kind (architecture, dataset, distillation method, ...).

A registry maps names to objects, in registration order. A name registers once: registering it
again is a ``ValueError`` naming the kind and the name, so two modules cannot silently replace each
other's entry. ``resolve(name, where)`` looks up a name a user wrote; an unknown one raises the line
a config error shows (``unknown(name, where)``), the same for every kind:
``where: unknown <kind> 'name'; known: a, b, c (did you mean 'x'?)``.

It is a mapping (``in``, iteration over the names, ``len``, ``[name]``, ``items()``); assigning an
entry registers it, and deleting one is for tests that register a stand-in for a while
(``monkeypatch.setitem``). timm's ``_registry.py`` (``@register_model``) and torchdistill's
``losses/registry.py`` (a "not registered" error that lists what is) are the models.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
_DECORATE = object()  # ``register(name)`` without an entry: the decorator form


def unknown_name(kind: str, name: object, known: list[str], where: str) -> str:
    """``where: unknown <kind> 'name'; known: a, b (did you mean 'x'?)``: the line every unknown name
    gets, a registry's or one a config setting names among other known names."""
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}: unknown {kind} {name!r}; known: {', '.join(known)}{hint}"


class Registry(MutableMapping[str, T], Generic[T]):
    """Names -> objects of one ``kind`` (the word its errors use: "architecture", "dataset", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, entry: T) -> T: ...
    def register(self, name: str, entry: Any = _DECORATE) -> Any:
        """Register ``entry`` under ``name`` and return it; ``@registry.register(name)`` decorates."""
        if entry is _DECORATE:
            return lambda decorated: self.register(name, decorated)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unknown(self, name: object, where: str) -> str:
        """The error line for ``name``, which is not registered: the known names and the closest."""
        return unknown_name(self.kind, name, list(self._entries), where)

    def resolve(self, name: object, where: str) -> T:
        """The entry ``name`` names (``where``: the config key it came from, for the error)."""
        if name not in self:
            raise ValueError(self.unknown(name, where))
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries  # a YAML list or null is no name

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
