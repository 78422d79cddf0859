"""The dataset registry: one declaration per module, registered with @register.

`DATASETS` maps a name to its declaration (a `base.Dataset` instance); params select a
declaration by the entry's key or its `loader` field. Every module of this package is
imported, so adding a dataset is adding a module. `pipeline.data.prepare` writes the
prepared format from a declaration's plan.
"""

from __future__ import annotations

import importlib
import pkgutil

from pipeline.datasets.base import Dataset

DATASETS: dict[str, Dataset] = {}


def register(cls: type) -> type:
    """Class decorator adding an instance of a declaration to DATASETS under `cls.name`."""
    if cls.name in DATASETS:
        raise ValueError(f"dataset {cls.name!r} registered twice")
    DATASETS[cls.name] = cls()
    return cls


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


_import_all()
