"""Evaluations beyond per-epoch accuracy (feature probes, transfer, VAE metrics, attacks).

Every module here is imported with the package, so the tasks it registers are known.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
