"""One registry helper for every kind of plug-in (models, tables, methods, tasks, copy makers)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

from curriculab.config import ConfigError, suggest

T = TypeVar("T")


# The packages whose modules register plug-ins when imported; loaded once, on the first lookup.
PLUGIN_PACKAGES = ("curriculab.models", "curriculab.methods", "curriculab.evaluate", "curriculab.tables")
_loaded = False


def load_plugins() -> None:
    """Import every module of the plug-in packages, so each registry holds all its entries."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in PLUGIN_PACKAGES:
        pkg = importlib.import_module(name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{name}.{mod.name}")


class Registry(Generic[T]):
    """name → entry, filled by plug-in modules as they are imported (see `load_plugins`)."""

    def __init__(self, kind: str):
        self.kind = kind
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
        load_plugins()

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
