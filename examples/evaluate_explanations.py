"""Evaluate every explanation method on the embedded Fashion-MNIST model: faithfulness
(deletion and insertion AUC, average drop, increase in confidence) and localisation (the
pointing game and the share of the map's energy on the garment), next to two maps that
know nothing about the model: a seeded random map and a Gaussian bump at the centre.

The default run takes the first 200 Fashion-MNIST test images (with the Debian data set
installed, ``apt-get install dataset-fashion-mnist``; otherwise the shipped samples) and
takes about three minutes on two CPU cores, most of it in the 200 x 17 x 2 perturbed images
each set of maps is scored on; ``--fast`` takes the ten shipped samples, with 4 samples
for SS-CAM and IS-CAM instead of 35 and 10 (about 10 s).
Every map explains the class the model predicts. It prints a markdown table and saves
the mean deletion and insertion curves and the localisation scores:

    python examples/evaluate_explanations.py [--fast] [--images 200] [--steps 16]
        [--out docs/images/evaluate_explanations.png]

The ground truth for localisation is the garment itself, its pixels brighter than 0.05
(as the model card's CAM check). On 28 x 28 items the garment fills much of the image,
so the pointing game is easy here: the line above the table says how much. The harder
benchmark, with the items pasted at random onto a 64 x 64 canvas, is
``examples/localisation_benchmark.py``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import xai
from xai.metrics import average_drop, deletion, energy_pointing_game, insertion, pointing_game
from xai.viz._mpl import pyplot
from xai.viz.grids import save_figure

THRESHOLD = 0.05  # garment pixels: intensity above this (the model card's definition)
TOLERANCE = 0  # pointing game: the maximum itself must be on the garment
BASELINES = ("random", "centre")
NOTES = {
    "eigencam": "class-agnostic",
    "random": "ignores the model",
    "centre": "ignores the model",
}
# --fast only: SS-CAM and IS-CAM with 4 noised/scaled copies per mask, not 35 and 10
FAST_OPTIONS = {"sscam": {"num_samples": 4}, "iscam": {"num_samples": 4}}


@dataclass
class Row:
    """One set of maps' numbers; several methods whose maps are identical share a row."""

    names: list[str]
    seconds: list[float]  # each method's time to make its maps
    deletion: xai.metrics.Curve
    insertion: xai.metrics.Curve
    drop: float
    increase: float
    pointing: float
    energy: float


def load_images(fast: bool, count: int) -> tuple[torch.Tensor, str]:
    """(N, 1, 28, 28) images in [0, 1] and where they come from."""
    if not fast:
        try:
            test = xai.data.load("fashion-mnist", split="test")
        except FileNotFoundError:
            pass
        else:
            images, _ = test.subset(np.arange(min(count, len(test)))).tensors()
            return images, f"the first {len(images)} Fashion-MNIST test images"
    images, _ = xai.models.sample_batch()
    return images, "the ten shipped samples"


def baseline_map(name: str, n: int, size: int) -> torch.Tensor:
    """A map that ignores the model: seeded uniform noise, or a Gaussian bump (sigma =
    size / 4) at the centre, where Fashion-MNIST garments sit."""
    if name == "random":
        return torch.rand(n, size, size, generator=torch.Generator().manual_seed(0))
    centre = (size - 1) / 2
    offsets = torch.arange(size, dtype=torch.float32) - centre
    bump = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * (size / 4) ** 2))
    return bump.expand(n, size, size).clone()


def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
) -> tuple[xai.metrics.Curve, xai.metrics.Curve, float, float, float, float]:
    """Every metric of one set of maps, for the given target classes."""
    d = deletion(model, images, maps, targets, steps=steps, batch_size=512)
    i = insertion(model, images, maps, targets, steps=steps, batch_size=512)
    c = average_drop(model, images, maps, targets, batch_size=512)
    p = pointing_game(maps, mask, tolerance=TOLERANCE)
    e = energy_pointing_game(maps, mask)
    return d, i, c.average_drop, c.increase_in_confidence, 100 * p.accuracy, 100 * e.mean


def run(
    images: torch.Tensor, steps: int, options: dict[str, dict[str, int]] | None = None
) -> tuple[list[Row], torch.Tensor]:
    """Make each method's maps for the predicted class and evaluate them; ``options``: a
    method's own options where they differ from its defaults."""
    options = options or {}
    model = xai.models.pretrained("fashion-mnist")
    mask = images[:, 0] > THRESHOLD
    rows: list[tuple[torch.Tensor, Row]] = []
    with torch.no_grad():
        targets = model(images).argmax(dim=1)  # every map explains the predicted class
    for name in (*xai.methods(), *BASELINES):
        start = time.perf_counter()
        if name in BASELINES:
            maps = baseline_map(name, len(images), images.shape[-1])
        else:
            extra = options.get(name, {})
            maps = xai.explain(model, images, method=name, target=targets, **extra).maps
        seconds = time.perf_counter() - start
        same = next((row for m, row in rows if torch.allclose(m, maps, atol=1e-5)), None)
        if same is not None:  # e.g. Grad-CAM = HiResCAM = CAM after min-max on a GAP head
            same.names.append(name)
            same.seconds.append(seconds)
            continue
        d, i, drop, increase, pointing, energy = evaluate(model, images, maps, targets, mask, steps)
        row = Row([name], [seconds], d, i, drop, increase, pointing, energy)
        rows.append((maps, row))
        print(f"  {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return [row for _, row in rows], mask


def table(rows: list[Row], options: dict[str, dict[str, int]] | None = None) -> str:
    """The markdown table: one line per method, baselines last; a method run with
    ``options`` of its own says so in its note."""
    lines = [
        "| method | deletion AUC ↓ | insertion AUC ↑ | average drop % ↓ | increase % ↑ "
        "| pointing game % ↑ | energy in mask % ↑ | map seconds | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        numbers = (
            f"{row.deletion.mean_auc:.3f} | {row.insertion.mean_auc:.3f} | {row.drop:.1f} | "
            f"{row.increase:.1f} | {row.pointing:.1f} | {row.energy:.1f}"
        )
        for index, (name, seconds) in enumerate(zip(row.names, row.seconds, strict=True)):
            timing = "-" if name in BASELINES else f"{seconds:.2f}"
            note = NOTES.get(name, f"same maps as {row.names[0]}" if index else "")
            if (options or {}).get(name):
                given = ", ".join(f"{k}={v}" for k, v in (options or {})[name].items())
                note = given + (f"; {note}" if note else "")
            lines.append(f"| {name} | {numbers} | {timing} | {note} |")
    return "\n".join(lines)


def figure(rows: list[Row], source: str, area: float, steps: int, out: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(19, 7.2), layout="constrained")
    colors = plt.get_cmap("tab10")
    for index, row in enumerate(rows):
        label = " = ".join(row.names)
        baseline = row.names[0] in BASELINES
        # Ten colours, then the same ten dotted: no two methods' curves look alike.
        style = {
            "color": ("black" if row.names[0] == "random" else "grey")
            if baseline
            else colors(index % 10),
            "linestyle": "--" if baseline else ("-" if index < 10 else ":"),
            "linewidth": 2.2 if baseline or index >= 10 else 1.6,
        }
        for ax, curve in zip(axes, (row.deletion, row.insertion), strict=False):
            ax.plot(
                curve.fractions, curve.mean_curve, label=f"{label}: {curve.mean_auc:.3f}", **style
            )
    titles = (
        f"deletion: most salient pixels set to {rows[0].deletion.baseline} first\n"
        "(legend: AUC, lower is better)",
        f"insertion: most salient pixels put back into a {rows[0].insertion.baseline} first"
        "\n(legend: AUC, higher is better)",
    )
    for ax, title, where in zip(axes[:2], titles, ("upper right", "lower right"), strict=True):
        ax.set_title(title, fontsize=12)
        ax.set_xlabel("share of pixels changed", fontsize=11)
        ax.set_ylabel("mean probability of the predicted class", fontsize=11)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc=where, fontsize=9, framealpha=0.9)

    names = [
        "\n= ".join(" = ".join(r.names[i : i + 2]) for i in range(0, len(r.names), 2)) for r in rows
    ]
    y = np.arange(len(rows))
    bars = axes[2]
    bars.barh(y - 0.2, [r.pointing for r in rows], height=0.4, label="pointing game %")
    bars.barh(y + 0.2, [r.energy for r in rows], height=0.4, label="energy in mask %")
    bars.axvline(100 * area, color="black", linestyle=":", label=f"garment area {area:.0%}")
    bars.set_yticks(y, names, fontsize=9)
    bars.invert_yaxis()
    bars.set_xlim(0, 100)
    bars.set_xlabel("percent (higher is better)", fontsize=11)
    bars.set_title(
        f"localisation on the garment mask (pixels > {THRESHOLD})\n"
        f"pointing game tolerance {TOLERANCE} px",
        fontsize=12,
    )
    bars.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=10)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"Evaluating explanations of xai.models.pretrained('fashion-mnist') on {source}, "
        f"{steps} steps; dashed: maps that ignore the model",
        fontsize=13,
    )
    return save_figure(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the ten shipped samples only")
    parser.add_argument("--images", type=int, default=200, help="test images (default 200)")
    parser.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    parser.add_argument("--out", type=Path, default=Path("docs/images/evaluate_explanations.png"))
    args = parser.parse_args()

    torch.manual_seed(0)
    images, source = load_images(args.fast, args.images)
    print(f"evaluating {len(xai.methods())} methods and {len(BASELINES)} baselines on {source}")
    started = time.perf_counter()
    rows, mask = run(images, args.steps, FAST_OPTIONS if args.fast else None)
    area = float(mask.double().mean())
    print(
        f"\n{source}; the garment (pixels > {THRESHOLD}) covers {area:.1%} of the image on "
        f"average, so a map's maximum dropped at random is on it {area:.1%} of the time; "
        f"deletion to {rows[0].deletion.baseline}, insertion from {rows[0].insertion.baseline}, "
        f"{args.steps} steps, pointing "
        f"tolerance {TOLERANCE} px; {time.perf_counter() - started:.0f} s in all. (A harder "
        f"benchmark, items pasted onto a larger canvas: examples/localisation_benchmark.py.)\n"
    )
    print(table(rows, FAST_OPTIONS if args.fast else None))
    print(f"wrote {figure(rows, source, area, args.steps, args.out)}")


if __name__ == "__main__":
    main()
