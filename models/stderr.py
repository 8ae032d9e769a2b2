"""What C libraries print to the process's stderr, captured: file descriptor 2, not ``sys.stderr``.

Decoders (mpg123's "Xing stream size off") and Ray's C++ client write straight to descriptor 2,
past Python's ``sys.stderr``; the callers re-print such messages with context (the file they are
about) or drop them when their own one-line error says more.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["captured_stderr"]


@contextmanager
def captured_stderr() -> Iterator[list[bytes]]:
    """Descriptor 2 redirected into a temporary file for the block; the list yielded holds, once
    the block has ended (normally or not), the one ``bytes`` of everything written there."""
    captured: list[bytes] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            captured.append(capture.read())
