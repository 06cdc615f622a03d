"""Make the README's picture: the embedded Fashion-MNIST model explained by eight methods.

Each row is one of the ten test images shipped with the package (one per class), each
column a method, explaining the class the model predicts. Runs offline in seconds.

    python examples/readme_figure.py [--fast] [--out docs/images/methods.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

import xai

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fast", action="store_true", help="accepted like every example's; this one is fast"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/images/methods.png"))
    args = parser.parse_args()

    model = xai.models.pretrained("fashion-mnist")
    images, labels = xai.models.sample_batch()
    results = {m: xai.explain(model, images, method=m) for m in METHODS}
    predicted = results["cam"].targets

    rows, cols = len(images), len(METHODS) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols, 1.5 * rows))
    for row in range(rows):
        axes[row, 0].imshow(images[row, 0], cmap="gray", vmin=0, vmax=1)
        truth = model.class_names[int(labels[row])]
        guess = model.class_names[int(predicted[row])]
        axes[row, 0].set_ylabel(truth if truth == guess else f"{truth}\n(as {guess})", fontsize=8)
        for col, method in enumerate(METHODS, start=1):
            axes[row, col].imshow(images[row, 0], cmap="gray", vmin=0, vmax=1)
            heat = axes[row, col].imshow(
                results[method].maps[row], cmap="jet", alpha=0.5, vmin=0, vmax=1
            )
    for col, title in enumerate(["input", *METHODS]):
        axes[0, col].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    accuracy = model.card["test_accuracy"]
    fig.suptitle(
        f"xai.models.pretrained('fashion-mnist') (test accuracy {accuracy:.1%}): "
        f"maps for the predicted class",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.94, 0.99))
    # The scale in solid colours: the panels' colour map and range, without their alpha.
    solid = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=heat.get_cmap())
    bar = fig.colorbar(solid, cax=fig.add_axes((0.95, 0.3, 0.012, 0.4)))
    bar.set_label("importance, 0 = least, 1 = most", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
