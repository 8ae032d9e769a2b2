"""Scores → chroma, shingles, search, re-ranking and evaluation. Knows nothing of folders.

The names below are imported on first use (PEP 562): importing one submodule (``retrieval.options``
for the command line's ``--help``) does not load music21, numba and PyTorch for all the others.
"""

import sys
import types
from importlib import import_module

__all__ = ["IndexSettings", "Match", "QueryResult", "SettingsMismatchError", "Theme", "ThemeError",
           "evaluate", "load_theme", "query", "query_many"]

_HOMES = {"IndexSettings": "models.retrieval_features", "SettingsMismatchError": "models.retrieval_features",
          "QueryResult": "retrieval.query", "query": "retrieval.query", "query_many": "retrieval.query",
          "Match": "retrieval.search", "Theme": "retrieval.theme", "ThemeError": "retrieval.theme",
          "load_theme": "retrieval.theme", "evaluate": "retrieval.ground_truth"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps ``retrieval.query`` the function: importing the submodule of the same name sets the
    package's attribute to the module, which would shadow the function ``from retrieval import
    query`` promises (an eager ``from retrieval.query import query`` used to rebind it)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "query" and isinstance(value, types.ModuleType):
            value = value.query
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
