"""One error family for every bad input xai refuses.

Each error names what was expected, what was received and the fix. They subclass the
built-in error a caller would expect (``ValueError``, ``TypeError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working, and all of them
subclass ``XAIError``, so a caller (the command line first of all) can catch exactly the
errors xai raised on purpose and let a bug anywhere else show its traceback.

This module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "XAIError",
    "XAIFileNotFoundError",
    "XAIImportError",
    "XAINotADirectoryError",
    "XAIOSError",
    "XAIPermissionError",
    "XAITypeError",
    "XAIValueError",
]


class XAIError(Exception):
    """Base of every error xai raises for input it refuses (never for its own bugs)."""


class XAIValueError(XAIError, ValueError):
    """A value of the right type that xai cannot use: a shape, a range, a layer name."""


class XAITypeError(XAIError, TypeError):
    """An argument of the wrong type."""


class XAIFileNotFoundError(XAIError, FileNotFoundError):
    """A file or folder named by the caller does not exist."""


class XAINotADirectoryError(XAIError, NotADirectoryError):
    """A path named as a folder is a file."""


class XAIPermissionError(XAIError, PermissionError):
    """A file or folder named by the caller cannot be written or read."""


class XAIOSError(XAIError, OSError):
    """A file that exists but cannot be decoded or encoded."""


class XAIImportError(XAIError, ImportError):
    """An optional package is missing; the message says how to install it."""
