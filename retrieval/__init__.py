"""Scores → chroma, shingles, search, re-ranking and evaluation. Knows nothing of folders."""

from models.retrieval_features import FeatureSettings, SettingsMismatchError
from retrieval.query import QueryResult, query, query_many
from retrieval.search import Match
from retrieval.theme import Theme, ThemeError, load_theme

__all__ = ["FeatureSettings", "Match", "QueryResult", "SettingsMismatchError", "Theme", "ThemeError",
           "load_theme", "query", "query_many"]
