"""A small typed registry: name -> object, with "did you mean" errors.

Used for tasks, generation suites, answer scorers and model backends.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sparkle_vlm.errors import SparkleError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind.

    >>> r: Registry[int] = Registry("number")
    >>> r.add("one", 1)
    1
    >>> r.get("one")
    1
    >>> r.get("onw")
    Traceback (most recent call last):
    ...
    sparkle_vlm.errors.SparkleError: unknown number 'onw'; did you mean 'one'?
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; a second, different item under one name is an error."""
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(item: T) -> T:
            return self.add(name, item)

        return deco

    def get(self, name: str) -> T:
        """The item called ``name``, or a :class:`SparkleError` naming close matches."""
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = "" if close else f"; known: {', '.join(sorted(self._items))}"
            raise SparkleError(f"unknown {self.kind} {name!r}{hint}{known}") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())
