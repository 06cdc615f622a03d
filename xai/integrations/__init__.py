"""Other libraries behind xai's result types: ``xai.integrations.shap``,
``xai.integrations.captum`` and ``xai.integrations.ray``.

The submodules load on first attribute access, so ``import xai`` then
``xai.integrations.shap.to_explanation(r)`` works; each imports its library (shap,
captum, Ray) on first use only, not when the submodule loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["captum", "ray", "shap"]

if TYPE_CHECKING:
    from xai.integrations import captum, ray, shap


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'xai.integrations' has no attribute {name!r}")
    module = importlib.import_module(f"xai.integrations.{name}")
    globals()[name] = module
    return module


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
