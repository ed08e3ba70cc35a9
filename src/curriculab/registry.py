"""One registry helper for every kind of plug-in (models, tables, methods, tasks, copy makers)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

from curriculab.config import ConfigError, suggest

T = TypeVar("T")


_loaded: set[str] = set()  # the plug-in packages imported so far


def load_plugins(packages) -> None:
    """Import every module of the plug-in `packages` (each once), so their registries hold all entries."""
    for name in packages:
        if name in _loaded:
            continue
        _loaded.add(name)
        pkg = importlib.import_module(name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{name}.{mod.name}")


def module_of(ref: str) -> str:
    """The module of a "package.module:name" reference."""
    return ref.partition(":")[0]


def load_object(ref: str):
    """The object a "package.module:name" reference names, its module imported on first use (how a plug-in's
    torch-free settings point at its implementation)."""
    return getattr(importlib.import_module(module_of(ref)), ref.partition(":")[2])


def ref_of(obj) -> str:
    """The "package.module:name" reference of a class or function (`load_object`'s inverse)."""
    return f"{obj.__module__}:{obj.__qualname__}"


class Registry(Generic[T]):
    """name → entry, filled by plug-in modules as they are imported (see `load_plugins`).

    `packages` are where the entries are defined: a lookup imports only those, so a check of the settings
    imports the torch-free settings modules and a training worker's model lookup no table module."""

    def __init__(self, kind: str, packages: tuple[str, ...] = ()):
        self.kind = kind
        self.packages = packages
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add an entry; a repeated name is an error (two plug-ins would silently shadow each other)."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget an entry (for tests that register a throwaway plug-in)."""
        self._entries.pop(name, None)

    def _discover(self) -> None:
        load_plugins(self.packages)

    def get(self, name: str, path: str | None = None) -> T:
        """The entry; an unknown name is a one-line ConfigError with close matches (at key `path`)."""
        self.check(name, path)
        return self._entries[name]

    def check(self, name: str, path: str | None = None) -> None:
        self._discover()
        if name not in self._entries:
            where = f"{path}: " if path else ""
            raise ConfigError(f"{where}unknown {self.kind} {name!r}{suggest(name, self._entries)}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def items(self) -> list[tuple[str, T]]:
        self._discover()
        return sorted(self._entries.items())
