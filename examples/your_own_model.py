"""Explaining your own model: a ResNet-shaped network written here, trained briefly.

The network (``SmallResNet``) is what a user would write: a stem convolution, residual
BasicBlocks with skip connections (the first block of ``layer2`` and ``layer3`` strided,
with a 1x1 convolution on the skip path), ``ReLU(inplace=True)`` modules reused inside
each block, global average pooling and one ``Linear`` head. The script

1. trains it: with Fashion-MNIST installed, 3 epochs on a tenth of it (5,400 training
   images; about 30 s on two idle CPU cores); with ``--fast`` or without the data set,
   4 epochs on 400 shifted and mirrored copies of the ten sample images shipped with the
   package (a few seconds; the model has then seen only those ten garments);
2. explains the ten sample images (one per class) with Grad-CAM at layers chosen by
   dotted name (``layer1.0``, ``layer2.1.conv2``), by module (``model.layer2[1]``) and
   at the default layer the toolkit finds, and with CAM, and prints the largest
   difference between Grad-CAM at the default layer and CAM / (h*w), which is zero up to
   rounding because the head is GAP + Linear;
3. wraps the same weights in a model returning a dict ``{"logits", "embedding"}`` and
   explains it with callable targets (one class for all, and each image's own class);
4. checks the model was left as it was: train/eval flags, no ``.grad``, no hooks,
   batch-norm statistics and weights unchanged;
5. saves a figure: each sample image, its Grad-CAM maps at three depths and its CAM.

    python examples/your_own_model.py [--fast] [--out docs/images/your_own_model.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap
from torch import nn

import xai
from xai.viz.grids import save_figure
from xai.viz.overlay import colorize, overlay


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the input (the skip connection)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)  # one module, called twice per forward pass
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class SmallResNet(nn.Module):
    """stem (28x28) -> layer1 (28x28) -> layer2 (14x14) -> layer3 (7x7) -> GAP -> fc."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.normalize = xai.models.Normalize(0.286, 0.353)  # Fashion-MNIST's mean and std
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.layer1 = nn.Sequential(BasicBlock(width, width))
        self.layer2 = nn.Sequential(
            BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width)
        )
        self.layer3 = nn.Sequential(
            BasicBlock(2 * width, 4 * width, 2), BasicBlock(4 * width, 4 * width)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(self.normalize(x)))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


class WithEmbedding(nn.Module):
    """The same network, returning a dict: a model ``target=int`` cannot explain."""

    def __init__(self, net: SmallResNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.net.embed(x)
        return {"logits": self.net.fc(embedding), "embedding": embedding}


def _augmented_samples(copies: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``copies`` random shifts (up to 2 pixels) and mirror images of each sample image."""
    images, labels = xai.models.sample_batch()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(copies):
        dy, dx = torch.randint(-2, 3, (2,), generator=generator).tolist()
        shifted = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
        mirror = torch.rand(len(images), generator=generator) < 0.5
        out.append(torch.where(mirror[:, None, None, None], shifted.flip(-1), shifted))
    return torch.cat(out), labels.repeat(copies)


def train(model: nn.Module, fast: bool, seed: int) -> str:
    """Train briefly; return what it was trained on and how well it does."""
    data = None
    if not fast:
        try:
            data = xai.data.splits("fashion-mnist", fraction=0.1, seed=seed)
        except FileNotFoundError:
            print(
                "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): "
                "training on the shipped samples"
            )
    if data is not None:
        result = xai.training.fit(
            model,
            data.train,
            data.val,
            epochs=3,
            lr=3e-3,
            schedule="onecycle",
            patience=0,
            seed=seed,
        )
        accuracy = xai.training.evaluate(model, data.test).accuracy
        return (
            f"trained on {len(data.train)} Fashion-MNIST images for {result.epochs_run} "
            f"epochs in {result.seconds:.0f} s: test accuracy {accuracy:.3f} "
            f"({len(data.test)} images)"
        )
    x, y = _augmented_samples(40, seed)
    images, labels = xai.models.sample_batch()
    result = xai.training.fit(
        model,
        (x, y),
        (images, labels),
        epochs=4,
        batch_size=32,
        patience=0,
        seed=seed,
        progress=False,
    )
    return (
        f"trained on {len(x)} shifted/mirrored copies of the 10 sample images for "
        f"{result.epochs_run} epochs in {result.seconds:.0f} s: accuracy on the samples "
        f"{result.best_val_accuracy:.3f}"
    )


def hooks_left(model: nn.Module) -> int:
    """Forward and backward hooks registered on any submodule or parameter."""
    count = 0
    for module in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            count += len(getattr(module, attr))
    return count + sum(len(p._backward_hooks or {}) for p in model.parameters())


def figure(
    images: torch.Tensor, labels: torch.Tensor, predicted: list[int], rows: dict[str, torch.Tensor]
) -> Any:
    """Columns: the ten images; rows: the image, then one map per (label, maps) row."""
    names = xai.data.CLASS_NAMES["fashion-mnist"]
    n = len(images)
    fig, axes = plt.subplots(
        len(rows) + 1,
        n,
        figsize=(1.55 * n + 1.2, 1.75 * (len(rows) + 1) + 0.9),
        layout="constrained",
    )
    for j in range(n):
        true, guess = names[int(labels[j])], names[predicted[j]]
        color = "black" if true == guess else "#c0001a"
        axes[0, j].imshow(images[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"true: {true}\npredicted: {guess}", fontsize=8.5, color=color)
        for i, maps in enumerate(rows.values(), start=1):
            axes[i, j].imshow(overlay(images[j], maps[j], alpha=0.5))
    for i, label in enumerate(["input", *rows]):
        axes[i, 0].set_ylabel(label, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    palette = colorize(np.linspace(0.0, 1.0, 256)[None, :], "jet")[0] / 255.0
    bar = fig.colorbar(
        ScalarMappable(cmap=ListedColormap(palette)),
        ax=axes[1:, :],
        orientation="horizontal",
        fraction=0.04,
        pad=0.02,
        aspect=60,
    )
    bar.set_label("map value, min-max scaled per image (0 = least, 1 = most important)")
    fig.suptitle(
        "SmallResNet (written in examples/your_own_model.py): Grad-CAM at three depths "
        "and CAM, each explaining the predicted class",
        fontsize=11,
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="train on the shipped samples")
    parser.add_argument("--out", type=Path, default=Path("docs/images/your_own_model.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = SmallResNet()
    print(train(model, args.fast, args.seed))
    model.zero_grad(set_to_none=True)
    model.train()  # as a user's model often is in the middle of training
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}

    images, labels = xai.models.sample_batch()  # one shipped test image per class
    deep = xai.GradCAM(model)  # the default layer, found on the first call
    results = {
        "layer1.0": xai.GradCAM(model, layer="layer1.0")(images),
        "layer2.1.conv2": xai.GradCAM(model, layer="layer2.1.conv2")(images),
        "model.layer2[1]": xai.GradCAM(model, layer=model.layer2[1])(images),
        "default": deep(images),
        "cam": xai.CAM(model)(images),
    }
    for key, e in results.items():
        print(
            f"{e.method:8} layer={e.layer!s:15} ({key}): raw {tuple(e.raw.shape[1:])}, "
            f"maps {tuple(e.maps.shape[1:])}"
        )
    grad, cam = results["default"], results["cam"]
    h, w = grad.raw.shape[1:]
    scale = float(cam.raw.abs().max())
    gap = float((grad.raw - cam.raw / (h * w)).abs().max())
    print(
        f"Grad-CAM at {grad.layer} vs CAM/(h*w) = CAM/{h * w}: max |difference| {gap:.2e} "
        f"(CAM's largest value {scale:.3g})"
    )

    predicted = grad.targets
    dict_model = WithEmbedding(model)
    one_class = xai.GradCAM(dict_model)(images, target=lambda out: out["logits"][:, 3])
    own = labels.clone()
    per_sample = xai.GradCAM(dict_model)(
        images, target=lambda out: out["logits"].gather(1, own[:, None])[:, 0]
    )
    plain_one = xai.GradCAM(model)(images, target=3)
    plain_own = xai.GradCAM(model)(images, target=labels)
    print(
        f"dict model, target=lambda out: out['logits'][:, 3] at {one_class.layer}: max "
        f"|difference| from the plain model with target=3: "
        f"{float((one_class.raw - plain_one.raw).abs().max()):.2e}"
    )
    print(
        f"dict model, each image's own class gathered from out['logits']: max |difference| "
        f"from target=labels: {float((per_sample.raw - plain_own.raw).abs().max()):.2e}"
    )
    try:
        xai.CAM(dict_model)(images, target=lambda out: out["logits"][:, 3])
    except ValueError as error:
        print(f"CAM on the dict model refuses a callable target: {str(error).split('.')[0]}.")

    after = model.state_dict()
    print(
        f"model left as it was: training flags unchanged "
        f"{[m.training for m in model.modules()] == flags} (still in train mode: "
        f"{model.training}); parameters with a .grad: "
        f"{sum(p.grad is not None for p in model.parameters())}; hooks left: "
        f"{hooks_left(model)}; weights and batch-norm statistics unchanged: "
        f"{all(torch.equal(state[k], after[k]) for k in state)}"
    )

    rows = {
        "Grad-CAM\nlayer1.0\n(28x28)": results["layer1.0"].maps,
        "Grad-CAM\nlayer2.1\n(14x14)": results["model.layer2[1]"].maps,
        f"Grad-CAM\n{grad.layer}, default\n({h}x{w})": grad.maps,
        f"CAM\n({h}x{w})": cam.maps,
    }
    fig = figure(images, labels, predicted.tolist(), rows)
    print(f"wrote {save_figure(fig, args.out)}")


if __name__ == "__main__":
    main()
