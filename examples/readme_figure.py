"""Make the README's picture: eight methods explaining a small CNN on Fashion-MNIST.

Trains the default ``xai.models.GAPCNN`` for three epochs on 12,000 Fashion-MNIST training
images (about a minute on two CPU cores), then explains one test image of five
classes with each method, for the class the model predicts.

    python examples/readme_figure.py [--data /usr/share/datasets/fashion-mnist]
                                     [--out docs/images/methods.png]

Needs the four Fashion-MNIST IDX files (Debian: ``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import xai

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
EPOCHS = 3
METHODS = [
    "cam",
    "gradcam",
    "gradcam++",
    "layercam",
    "scorecam",
    "ablationcam",
    "eigencam",
    "guided-gradcam",
]


def read_idx(path: Path) -> np.ndarray:
    """A minimal IDX reader (big-endian header: magic, then one size per dimension)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=Path("docs/images/methods.png"))
    args = parser.parse_args()

    torch.manual_seed(0)
    train_x = torch.from_numpy(read_idx(args.data / "train-images-idx3-ubyte.gz").copy())
    train_y = torch.from_numpy(read_idx(args.data / "train-labels-idx1-ubyte.gz").copy())
    test_x = torch.from_numpy(read_idx(args.data / "t10k-images-idx3-ubyte.gz").copy())
    test_y = torch.from_numpy(read_idx(args.data / "t10k-labels-idx1-ubyte.gz").copy())
    train_x = train_x[:12_000, None].float() / 255
    train_y = train_y[:12_000].long()
    test_x = test_x[:, None].float() / 255

    model = xai.models.GAPCNN(in_channels=1, num_classes=10, mean=0.286, std=0.353)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(train_x)).split(128):
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(b).argmax(1) for b in test_x.split(1000)])
    accuracy = (predicted == test_y).float().mean().item()
    print(f"trained in {time.perf_counter() - start:.0f} s; test accuracy {accuracy:.3f}")

    picks = [int(np.flatnonzero((test_y == c) & (predicted == c))[0]) for c in (0, 1, 5, 8, 9)]
    x = test_x[picks]
    results = {m: xai.explain(model, x, method=m) for m in METHODS}

    fig, axes = plt.subplots(
        len(picks), len(METHODS) + 1, figsize=(1.6 * (len(METHODS) + 1), 1.75 * len(picks))
    )
    for row, index in enumerate(picks):
        axes[row, 0].imshow(x[row, 0], cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_ylabel(CLASSES[int(test_y[index])], fontsize=9)
        for col, method in enumerate(METHODS, start=1):
            axes[row, col].imshow(x[row, 0], cmap="gray", vmin=0, vmax=1)
            heat = axes[row, col].imshow(
                results[method].maps[row], cmap="jet", alpha=0.5, vmin=0, vmax=1
            )
    for col, title in enumerate(["input", *METHODS]):
        axes[0, col].set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"GAPCNN on Fashion-MNIST (test accuracy {accuracy:.1%} after {EPOCHS} epochs on "
        f"12k images): maps for the predicted class",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.95, 1))
    bar = fig.colorbar(heat, cax=fig.add_axes((0.955, 0.2, 0.012, 0.6)))
    bar.set_label("normalised map (Explanation.maps)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
