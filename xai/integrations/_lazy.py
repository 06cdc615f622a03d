"""Import an optional library on first use, with an install hint when it is missing."""

from __future__ import annotations

import importlib
from typing import Any

from xai.core.errors import XAIImportError

__all__ = ["require"]


def require(module: str, package: str, requirement: str) -> Any:
    """Import ``module``; if missing, say which ``package`` to install (``requirement``)."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - shap and captum are core dependencies
        raise XAIImportError(
            f"this needs the {package} package: pip install '{requirement}'"
        ) from None
