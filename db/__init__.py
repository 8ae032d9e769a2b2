"""Persistence: SQLite tables (through sqlite-utils) and FAISS index files."""
