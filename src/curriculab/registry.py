"""One registry helper for every kind of plug-in (models, tables, methods, tasks, copy makers)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

from curriculab.config import ConfigError, suggest

T = TypeVar("T")


# Where each kind of plug-in is defined: its package's modules register entries when imported. A lookup
# imports only its own kind's packages, so a training worker asking for a model or a method imports no
# table module (nor their plotting libraries).
PLUGIN_PACKAGES = {
    "model": ("curriculab.models",),
    "method": ("curriculab.methods",),
    "copy kind": ("curriculab.methods",),
    "task": ("curriculab.evaluate",),
    "table": ("curriculab.tables",),
}
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


class Registry(Generic[T]):
    """name → entry, filled by plug-in modules as they are imported (see `load_plugins`)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.packages = PLUGIN_PACKAGES.get(kind, ())
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
