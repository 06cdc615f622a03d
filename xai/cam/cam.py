"""CAM: class activation mapping from a global-average-pooling head.

Zhou, Khosla, Lapedriza, Oliva, Torralba (2016), "Learning Deep Features for
Discriminative Localization", CVPR.
"""

from __future__ import annotations

import torch
from torch import nn

from xai.cam.base import BaseCAM
from xai.core.capture import capture
from xai.core.errors import XAIValueError
from xai.core.hooks import forward_hooks
from xai.core.layers import LayerRef
from xai.core.targets import ResolvedTarget, TargetLike, logits_of, resolve_target

__all__ = ["CAM"]


class CAM(BaseCAM):
    r"""Class activation map of a network whose head is global average pooling + Linear.

    With feature maps $A^k$ (the last conv block's output, $h \times w$) and
    the head $y^c = \sum_k w^c_k \frac{1}{hw}\sum_{ij} A^k_{ij} + b^c$,

    $$
    L^c_{\mathrm{CAM}} = \mathrm{ReLU}\Big(\sum_k w^c_k A^k\Big)
    $$

    One forward pass, no gradients. The bias $b^c$ is spatially constant and left
    out, as in the paper. The paper shows the map without a ReLU (only its positive part
    is visualised after normalisation); the ReLU here is the same as Grad-CAM's so that
    the identity ``GradCAM.raw == CAM.raw / (h*w)`` holds exactly. Pass ``relu=False``
    for the signed map.

    The head is found, and checked, on each call: the model's output must be produced by
    a ``torch.nn.Linear`` whose input is the spatial mean of the explained layer's maps
    (``AdaptiveAvgPool2d(1)`` + flatten, a ``x.mean((2, 3))`` in ``forward``, or a
    torchvision ResNet's ``avgpool`` + ``fc`` all qualify). Otherwise a ``ValueError``
    points to Grad-CAM, which needs no such head.
    """

    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        linear_calls: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []

        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(module, nn.Linear) and inputs and isinstance(inputs[0], torch.Tensor):
                linear_calls.append((module, inputs[0].detach().clone(), output))

        linears = [(m, record) for m in self.model.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad(), capture([layer], grad=False) as cap, forward_hooks(linears):
            output = self.model(x)
        resolved = resolve_target(target, output, x.shape[0])
        classes = resolved.class_indices("CAM")
        scores = resolved.scores(output, torch.arange(x.shape[0]))
        maps = cap.maps(self.model, x, self.reshape)
        weights = self._head_weights(maps, layer.name, logits_of(output), linear_calls)
        w = weights[classes.to(weights.device)]  # (N, C)
        signed = self._weighted_sum(w, maps)
        return signed, resolved, scores

    @staticmethod
    def _head_weights(
        maps: torch.Tensor,
        name: str,
        output: object,
        linear_calls: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """The (classes, C) weights of the Linear head fed by the GAP of ``maps``."""
        fix = (
            " Use method='gradcam', which works on any conv layer and, on a GAP-headed "
            "network, equals CAM divided by h*w."
        )
        heads = [call for call in linear_calls if call[2] is output]
        if not isinstance(output, torch.Tensor) or not heads:
            raise XAIValueError(
                "CAM needs a global-average-pooling head: the model's output must be the "
                "output of a torch.nn.Linear applied to the pooled feature maps, and this "
                "model's output is not." + fix
            )
        head, head_input, _ = heads[-1]
        pooled = maps.float().mean(dim=(2, 3))
        features = head_input.float().reshape(head_input.shape[0], -1)
        if features.shape != pooled.shape:
            raise XAIValueError(
                f"CAM needs the Linear head's input to be the global average of layer "
                f"{name!r}: the head takes {features.shape[1]} features, the layer has "
                f"{pooled.shape[1]} channels." + fix
            )
        eps = torch.finfo(head_input.dtype).eps
        tol = 64 * eps * max(1.0, float(pooled.abs().max()))
        if not torch.allclose(features, pooled, rtol=64 * eps, atol=tol):
            raise XAIValueError(
                f"CAM needs the Linear head's input to be the global average of layer "
                f"{name!r}, and it is not (largest difference "
                f"{float((features - pooled).abs().max()):.3g}); pass layer=None for the "
                f"maps that feed the pooling." + fix
            )
        return head.weight.detach().float()
