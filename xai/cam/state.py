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
    # Only the modules in training mode are switched (and switched back): a model already
    # in eval mode, the usual case, costs one walk over its modules and no assignment.
    switched = [module for module in model.modules() if module.training]
    try:
        for module in switched:
            module.training = False
        yield
    finally:
        for module in switched:
            module.training = True
