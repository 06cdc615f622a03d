"""Scoping the model's state to one explanation call.

Every submodule's ``training`` flag is recorded, the model is put in evaluation mode (so
batch norm uses, and does not update, its running statistics, and dropout is off), and
each flag is restored in ``finally``, whatever happens inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["evaluation_mode"]


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run the body with ``model`` in eval mode; restore every submodule's flag after."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        for module, _ in flags:
            module.training = False
        yield
    finally:
        for module, training in flags:
            module.training = training
