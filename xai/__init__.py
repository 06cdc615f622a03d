"""xai-toolkit: explain PyTorch image classifiers with CAM, the Grad-CAM family and
Shapley values (exact, sampled, or through shap and captum).

    >>> import torch, xai
    >>> model = xai.models.GAPCNN(in_channels=1, num_classes=10)
    >>> x = torch.rand(4, 1, 28, 28)                   # images scaled to [0, 1]
    >>> e = xai.explain(model, x, method="gradcam")
    >>> tuple(e.maps.shape), e.layer                   # maps in [0, 1] at input size
    ((4, 28, 28), 'features.19')

Importing ``xai`` is light: torch and the method modules load on first use, and shap,
captum, matplotlib and OpenCV are never imported here. The method classes exported here
(``xai.GradCAM``, ...) come from the registry (``xai.registry``), the one list of methods.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from xai import registry
from xai.core.errors import XAIError, XAITypeError, XAIValueError
from xai.registry import methods

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "explain": "xai.api:explain",
    "explainer": "xai.api:explainer",
    "Explanation": "xai.explanation:Explanation",
    "ShapleyResult": "xai.explanation:ShapleyResult",
    "exact_shapley": "xai.shapley.exact:exact_shapley",
    "explain_dataset": "xai.runner:explain_dataset",
    "open_store": "xai.store:open_store",
    "ExplanationStore": "xai.store:ExplanationStore",
    "models": "xai.models",
    "data": "xai.data",
    "training": "xai.training",
    "shapley": "xai.shapley",
    "metrics": "xai.metrics",
    "targets": "xai.targets",
    "integrations": "xai.integrations",
    **registry.exports(),  # the method classes: xai.GradCAM, xai.ScoreCAM, ...
}

__all__ = [
    "Explanation",
    "ExplanationStore",
    "ShapleyResult",
    "XAIError",
    "XAITypeError",
    "XAIValueError",
    "__version__",
    "data",
    "exact_shapley",
    "explain",
    "explain_dataset",
    "explainer",
    "integrations",
    "methods",
    "metrics",
    "models",
    "open_store",
    "registry",
    "shapley",
    "targets",
    "training",
]
__all__ += sorted(registry.exports())

if TYPE_CHECKING:
    from xai import data, integrations, metrics, models, shapley, targets, training
    from xai.api import explain, explainer
    from xai.explanation import Explanation, ShapleyResult
    from xai.runner import explain_dataset
    from xai.shapley.exact import exact_shapley
    from xai.store import ExplanationStore, open_store


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'xai' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
