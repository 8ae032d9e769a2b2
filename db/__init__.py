"""Persistence: SQLite tables (through sqlite-utils) and FAISS index files."""

from db.store import IndexStore, Recording, StoreError

__all__ = ["IndexStore", "Recording", "StoreError"]
