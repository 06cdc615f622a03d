"""Built-in architectures by name, so that saved weights can be loaded into them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from xai.core.errors import XAIError, XAITypeError, XAIValueError
from xai.models.gapcnn import GAPCNN
from xai.models.mlp import MLP

__all__ = ["ARCHITECTURES", "build"]

ARCHITECTURES: dict[str, type[nn.Module]] = {"gapcnn": GAPCNN, "mlp": MLP}


def build(name: str, config: Mapping[str, Any] | None = None) -> nn.Module:
    """A new, untrained model of the built-in architecture ``name`` (``gapcnn``, ``mlp``).

    Args:
        name: the architecture, case-insensitive.
        config: its constructor arguments, as in ``model.config``.
    """
    key = name.strip().lower()
    if key not in ARCHITECTURES:
        raise XAIValueError(f"unknown architecture {name!r}; built-in: {', '.join(ARCHITECTURES)}")
    if config is not None and not isinstance(config, Mapping):
        raise XAITypeError(
            f"the configuration of {key} must be a mapping of its arguments, as in "
            f"model.config; got {type(config).__name__}"
        )
    try:
        return ARCHITECTURES[key](**dict(config or {}))
    except XAIError:  # a value the architecture refuses: its own message says which
        raise
    except TypeError as error:  # an argument it does not take
        raise XAIValueError(f"bad configuration for {key}: {error}") from None
