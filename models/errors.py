"""The one base class of user-facing errors, as librosa's ``ParameterError``.

Everything a user can cause (a bad file, flag, score, model or index) raises a
:class:`RetrievalError` whose message is one line naming the file or parameter and the problem;
``cli.main`` prints exactly those on one line. Anything else is a bug and shows its traceback.
Each subclass also derives from the built-in error it refines (``ValueError``, ``RuntimeError``),
so ``except ValueError`` keeps working for library users.
"""

from __future__ import annotations

__all__ = ["ParameterError", "RetrievalError", "printable"]


class RetrievalError(Exception):
    """Base of every error caused by input (files, parameters, indexes), not by a bug."""


class ParameterError(RetrievalError, ValueError):
    """A parameter outside what a function accepts (a bad flag value, shape or range)."""


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (an escape sequence, a newline in
    a file name) as Python escapes (``\\x1b``, ``\\n``) and the bytes of a file name that are not
    UTF-8 (decoded by Python as surrogates) as ``\\xff``; everything else, accents included, as it is."""
    return "".join(_printable_char(c) for c in text)


def _printable_char(c: str) -> str:
    if c.isprintable() or c == " ":
        return c
    if 0xDC80 <= ord(c) <= 0xDCFF:  # os.fsdecode's escape of an undecodable byte
        return f"\\x{ord(c) - 0xDC00:02x}"
    return c.encode("unicode_escape").decode("ascii")
