"""Scoping the model's state to one explanation call, safely across threads.

During a call the model runs in evaluation mode (batch norm uses, and does not update,
its running statistics; dropout is off). Every submodule that was in training mode is
switched for the call and switched back in ``finally``.

Several calls may explain one model at once from different threads. The switch is
therefore counted per submodule: the first call that needs a module in evaluation mode
switches it, later calls join, and only the last call to finish switches it back. A
model in training mode explained from four threads at once thus stays in evaluation
mode until every call is done, and is in training mode again afterwards, with its
batch-norm statistics untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["evaluation_mode"]

_LOCK = threading.Lock()
# Modules switched to evaluation mode by live calls -> how many live calls hold them.
_HELD: dict[nn.Module, int] = {}


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run the body with ``model`` in eval mode; restore every submodule's flag after."""
    held: list[nn.Module] = []
    with _LOCK:
        # A model already in eval mode, the usual case, costs one walk and no assignment.
        others = bool(_HELD)  # modules switched by other live calls (other threads)
        for module in model.modules():
            if module.training:
                module.training = False
                _HELD[module] = 1
                held.append(module)
            elif others and module in _HELD:  # another call switched it: stay until both end
                _HELD[module] += 1
                held.append(module)
    try:
        yield
    finally:
        with _LOCK:
            for module in held:
                count = _HELD[module] - 1
                if count:
                    _HELD[module] = count
                else:
                    del _HELD[module]
                    module.training = True
