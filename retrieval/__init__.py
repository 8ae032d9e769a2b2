"""Scores → chroma, shingles, search, re-ranking and evaluation (knows nothing of folders)."""
