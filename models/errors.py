"""The one base class of user-facing errors, as librosa's ``ParameterError``.

Everything a user can cause (a bad file, flag, score, model or index) raises a
:class:`RetrievalError` whose message is one line naming the file or parameter and the problem;
``cli.main`` prints exactly those on one line. Anything else is a bug and shows its traceback.
Each subclass also derives from the built-in error it refines (``ValueError``, ``RuntimeError``),
so ``except ValueError`` keeps working for library users.
"""

from __future__ import annotations

__all__ = ["ParameterError", "RetrievalError"]


class RetrievalError(Exception):
    """Base of every error caused by input (files, parameters, indexes), not by a bug."""


class ParameterError(RetrievalError, ValueError):
    """A parameter outside what a function accepts (a bad flag value, shape or range)."""
