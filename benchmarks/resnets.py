"""ResNet-18 and ResNet-50 with torchvision's layout, without torchvision.

The benchmarks need the two standard ImageNet shapes in both of their environments, and
torchvision does not import beside the CPU build of torch the project pins. These follow
He, Zhang, Ren, Sun (2016), "Deep Residual Learning for Image Recognition", in the layout
torchvision uses (``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``, stride on the
3x3 convolution of a bottleneck, in-place ReLUs), so the layer names the peers expect
(``layer4``) are the same and the cost of a forward pass is that of the real networks.
Weights are random (seeded, He initialisation); a benchmark times arithmetic, not accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["resnet18", "resnet50"]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]


class _Block(nn.Module):
    """A residual block: ``relu(body(x) + shortcut(x))``, the body ending without ReLU."""

    def __init__(self, body: list[nn.Module], shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)
        self.downsample = shortcut
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.body(x) + identity)


def _basic(cin: int, cout: int, stride: int) -> _Block:
    body = [
        *_conv_bn(cin, cout, 3, stride),
        nn.ReLU(inplace=True),
        *_conv_bn(cout, cout, 3),
    ]
    return _Block(body, _shortcut(cin, cout, stride))


def _bottleneck(cin: int, cout: int, stride: int) -> _Block:
    width = cout // 4
    body = [
        *_conv_bn(cin, width, 1),
        nn.ReLU(inplace=True),
        *_conv_bn(width, width, 3, stride),
        nn.ReLU(inplace=True),
        *_conv_bn(width, cout, 1),
    ]
    return _Block(body, _shortcut(cin, cout, stride))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(*_conv_bn(cin, cout, 1, stride))


class ResNet(nn.Module):
    """``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``, as torchvision names them."""

    def __init__(self, block, depths: tuple[int, ...], widths: tuple[int, ...]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        cin = 64
        for index, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if index > 0 and j == 0 else 1
                blocks.append(block(cin, width, stride))
                cin = width
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 1000)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(seed: int = 0) -> ResNet:
    """ResNet-18 (11.7 M parameters, 1.8 GFLOPs at 224 x 224), eval mode."""
    torch.manual_seed(seed)
    return ResNet(_basic, (2, 2, 2, 2), (64, 128, 256, 512)).eval()


def resnet50(seed: int = 0) -> ResNet:
    """ResNet-50 (25.6 M parameters, 4.1 GFLOPs at 224 x 224), eval mode."""
    torch.manual_seed(seed)
    return ResNet(_bottleneck, (3, 4, 6, 3), (256, 512, 1024, 2048)).eval()
