"""The coursework figure: for every Fashion-MNIST class, one test image with its CAM and
Grad-CAM side by side, titled with the true and the predicted class.

With the Debian data set installed (``apt-get install dataset-fashion-mnist``) it takes
the first test image of each class; without it, or with ``--fast``, the ten sample
images shipped with the package. Runs offline in seconds on the embedded model:

    python examples/cam_per_class.py [--fast] [--out docs/images/class_grid.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import xai
from xai.viz.grids import class_grid, save_figure


def _images(fast: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    if not fast:
        try:
            test = xai.data.load("fashion-mnist", split="test")
        except FileNotFoundError:
            pass
        else:
            images, labels = test.subset(np.arange(200)).tensors()
            return images, labels, "Fashion-MNIST test set"
    images, labels = xai.models.sample_batch()
    return images, labels, "the shipped samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the shipped samples only")
    parser.add_argument("--out", type=Path, default=Path("docs/images/class_grid.png"))
    args = parser.parse_args()

    model = xai.models.pretrained("fashion-mnist")
    images, labels, source = _images(args.fast)
    figure = class_grid(model, images, labels, methods=("cam", "gradcam"))
    figure.suptitle(
        f"{figure.get_suptitle()}\nembedded model, first image of each class in {source}",
        fontsize=11,
    )
    print(f"wrote {save_figure(figure, args.out)}")


if __name__ == "__main__":
    main()
