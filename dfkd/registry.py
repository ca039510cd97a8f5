"""One generic name -> object registry, used for models, generators and methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from dfkd.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to objects; unknown names raise a ConfigError listing the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
