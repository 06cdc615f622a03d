"""Which layer ``layer=None`` explains, found once per model and input shape.

**Convolutional networks**: the last spatial feature maps, i.e. the last ``(N, C, h, w)``
output with ``h * w > 1`` produced by any submodule, from the first convolution on (so
an input-normalisation layer never counts). For a network with a global-pooling head
this is exactly the input of the pooling, the maps CAM uses. When several modules
return that very tensor with those very values (a conv block's last in-place ReLU, the
block, the ``Sequential`` around them), the innermost one that runs once is reported:
the leaf module if it runs once, else the innermost container. A module whose output
was changed in place afterwards (a conv before an in-place ReLU, or before a residual
``out += x``) does not qualify. A torchvision ResNet gives ``layer4.1``.

**Transformers** (an attention module runs after the last spatial maps): the input of
the last attention, i.e. the last token layer whose patch tokens still reach the output
(``blocks[-1].norm1`` in timm's layout; ``vit.layers[-1].layernorm_before`` in Hugging
Face's, ``vit.encoder.layer[-1].layernorm_before`` before transformers 5). After the
last attention a class-token head sees no patch token, so every map there would be
zero; before it, a patch-embedding layer is no explanation of the attention. The layer
is the module whose output *is* the tensor handed to the last attention; if no module
returns it (a functional norm), the last token-shaped output before that attention. The
found layer is then checked: its patch tokens must get a non-zero gradient from the
top-1 score, else the error asks for ``layer=``.

The result is cached per model (weakly: the cache does not keep the model alive) and
input shape, so ``xai.explain`` traces a model once, not on every call.
"""

from __future__ import annotations

import weakref
from collections import Counter

import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.core.layers import LayerRef
from xai.core.state import evaluation_mode
from xai.core.trace import Call, is_attention, profile, remember, remembered, trace

__all__ = ["default_layer", "find_default_layer"]


def _is_spatial(value: object) -> bool:
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        return False
    return value.shape[2] * value.shape[3] > 1


def _innermost(calls: list[Call], chosen: Call, counts: Counter) -> Call | None:
    """Among the calls that returned ``chosen``'s very tensor with the same values and
    ran once: the last leaf module, else the first (innermost) container."""
    candidates = [
        c
        for c in calls
        if c.output is chosen.output
        and counts[c.name] == 1
        and c.snapshot is not None
        and chosen.snapshot is not None
        and torch.equal(c.snapshot, chosen.snapshot)
    ]
    leaves = [c for c in candidates if next(c.module.children(), None) is None]
    if leaves:
        return leaves[-1]
    return candidates[0] if candidates else None


def _outermost_attention(calls: list[Call]) -> list[Call]:
    attention = [c for c in calls if is_attention(c.module)]
    names = {c.name for c in attention}
    outer = [
        c
        for c in attention
        if not any(c.name.startswith(other + ".") for other in names if other != c.name)
    ]
    return sorted(outer, key=lambda c: c.start)


def _token_layer(calls: list[Call], attention: Call, counts: Counter) -> Call:
    given = attention.given
    before = [c for c in calls if c.end < attention.start]
    if given is not None:
        same = [c for c in before if c.output is given and c.snapshot is not None]
        if same:
            found = _innermost(before, same[-1], counts)
            if found is not None:
                return found
    inside = [c.name for c in calls if is_attention(c.module)]
    tokens = [
        c
        for c in before
        if isinstance(c.output, torch.Tensor)
        and c.output.ndim == 3
        and c.output.shape[0] == 1
        and counts[c.name] == 1
        and not any(c.name == a or c.name.startswith(a + ".") for a in inside)
    ]
    if not tokens:
        raise XAIValueError(
            f"the model runs attention ({attention.name!r}) but no submodule returns its "
            f"(N, tokens, C) input; pass layer=... naming the token layer to explain."
        )
    return tokens[-1]


def find_default_layer(model: nn.Module, x: torch.Tensor) -> LayerRef:
    """The default layer for inputs shaped like ``x`` (see the module doc); uncached."""
    return _find(model, x)[0]


def _find(model: nn.Module, x: torch.Tensor) -> tuple[LayerRef, list[Call]]:
    with evaluation_mode(model):
        calls, _ = trace(model, x[:1])
        ref = _choose(calls, x)
        profile(model, x, calls)  # the reshape of a token layer reads the patch grid here
        if not _is_spatial_layer(calls, ref):
            _check_gradient(model, x, ref)
    return ref, calls


def _choose(calls: list[Call], x: torch.Tensor) -> LayerRef:
    counts = Counter(c.name for c in calls)
    convs = [i for i, c in enumerate(calls) if isinstance(c.module, nn.modules.conv._ConvNd)]
    spatial = [c for c in calls[convs[0] if convs else len(calls) :] if _is_spatial(c.output)]
    last_spatial_end = spatial[-1].end if spatial else -1
    attention = [a for a in _outermost_attention(calls) if a.start > last_spatial_end]
    if attention:
        chosen = _token_layer(calls, attention[-1], counts)
        return LayerRef(chosen.name, chosen.module)
    if not spatial:
        raise XAIValueError(
            f"no submodule of this model returns (N, C, h, w) feature maps with h*w > 1 "
            f"after a convolution, nor runs attention over tokens, for an input of shape "
            f"{tuple(x.shape[1:])}; pass layer=... explicitly."
        )
    found = _innermost(calls, spatial[-1], counts)
    if found is None:
        raise XAIValueError(
            f"the last feature maps come from module {spatial[-1].name!r}, which runs more "
            f"than once per forward pass; pass layer=... naming a module that runs once "
            f"(for example the enclosing block)."
        )
    return LayerRef(found.name, found.module)


def _check_gradient(model: nn.Module, x: torch.Tensor, ref: LayerRef) -> None:
    """Refuse a token layer whose patch tokens get no gradient from the top-1 score."""
    from xai.core.capture import forward_backward
    from xai.core.targets import logits_of

    with torch.no_grad():
        output = model(x[:1])
    logits = logits_of(output)
    if logits is None or logits.ndim != 2:
        return  # not a classifier: the caller's target decides; nothing to check here
    _, grads, _, _ = forward_backward(model, x[:1], [ref], None)
    if not bool(grads[0].ne(0).any()):
        raise XAIValueError(
            f"the default layer {ref.name!r} gets no gradient on its patch tokens from the "
            f"top-1 score (they do not reach the output from there), so every map would be "
            f"zero; pass layer=... naming a layer before the last attention."
        )


def default_layer(model: nn.Module, x: torch.Tensor) -> LayerRef:
    """``find_default_layer``, cached per model and input shape."""
    stored = remembered(model, x, "default_layer")
    if stored is not None:
        path, module_ref = stored
        module = module_ref()
        try:
            current = model.get_submodule(path)
        except AttributeError:
            current = None
        if module is not None and current is module:
            return LayerRef(path, current)
        # the model was edited since it was traced: trace it again, uncached
        return find_default_layer(model, x)
    ref, calls = _find(model, x)
    remember(model, x, "default_layer", (ref.path, weakref.ref(ref.module)), calls)
    return ref


def _is_spatial_layer(calls: list[Call], ref: LayerRef) -> bool:
    return any(c.name == ref.path and _is_spatial(c.output) for c in calls)
