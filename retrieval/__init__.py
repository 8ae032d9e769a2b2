"""Scores → chroma, shingles, search, re-ranking and evaluation. Knows nothing of folders.

The names below are imported on first use (PEP 562): importing one submodule does not load music21,
PyTorch and numba for all the others.
"""

from importlib import import_module

__all__ = ["FeatureSettings", "Match", "QueryResult", "SettingsMismatchError", "Theme", "ThemeError",
           "load_theme", "query", "query_many"]

_HOMES = {"FeatureSettings": "models.retrieval_features", "SettingsMismatchError": "models.retrieval_features",
          "QueryResult": "retrieval.query", "query": "retrieval.query", "query_many": "retrieval.query",
          "Match": "retrieval.search", "Theme": "retrieval.theme", "ThemeError": "retrieval.theme",
          "load_theme": "retrieval.theme"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
