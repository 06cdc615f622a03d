"""How far are sampled SHAP values from the exact ones? One image, its grid patches as
the players, exact patch Shapley values against shap's and captum's estimators playing
the very same game with comparable budgets of model evaluations.

The game is :class:`xai.shapley.ImagePatchGame`: the embedded Fashion-MNIST model, one
shipped sample image, its predicted class's logit as the value, and a patch that is
absent shows the image's Gaussian blur. The exact values (``xai.exact_shapley``) take
all 2^16 = 65,536 coalitions of the 4 x 4 grid. The estimators see the game as a tabular
function of a 0/1 patch-presence vector z (the instance is z = ones, the background the
single row z = zeros), so every library plays the same players, baseline and values:

* shap's ``KernelExplainer`` (``l1_reg=False``, through ``xai.integrations.shap``);
* shap's ``PartitionExplainer`` with a ``maskers.Partition`` whose hierarchy groups
  neighbouring patches (Ward linkage of the patch centres): it returns the *Owen*
  values of that hierarchy, which are not the Shapley values. The script computes those
  Owen values exactly too, and shows Partition equals them;
* captum's ``ShapleyValueSampling`` on the image itself, with the patches as its
  ``feature_mask``, the game's blurred image as the baseline, and one order's images per
  forward pass (``perturbations_per_eval``);
* xai's own ``permutation_shapley`` and ``kernel_shap``.

It prints a markdown table (evaluations, seconds, errors against the exact values,
Spearman rank agreement of the patches, efficiency) and draws every estimator's patch
map on one diverging colour scale. About 2 minutes on 2 CPU cores; ``--fast`` (a 3 x 3
grid, 512 coalitions) takes seconds:

    python examples/shap_vs_exact.py [--fast] [--out docs/images/shap_vs_exact.png]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import xai
from xai.viz.grids import save_figure

SAMPLE = 9
"""The shipped sample explained (index into ``xai.models.sample_batch()``)."""


@dataclass
class Run:
    """One estimator's patch values and what they cost."""

    name: str
    values: np.ndarray
    evaluations: int
    seconds: float
    budget: str
    drawn: bool = True


class CountedGame:
    """The game as a numpy function of 0/1 patch-presence rows, counting evaluations."""

    def __init__(self, game: Any) -> None:
        self.game = game
        self.evaluations = 0

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        self.evaluations += len(rows)
        return self.game(rows > 0.5)


def owen_values(value: Callable[[np.ndarray], np.ndarray], n: int, linkage: np.ndarray) -> Any:
    """Exact Owen values of a game for a binary hierarchy (a scipy ``linkage`` matrix).

    Owen (1977): within each node of the hierarchy its two children play a two-player
    Shapley game, given the coalition C of outside groups present. For a leaf i whose
    path to the root passes d sibling groups G_1..G_d, that makes

        owen_i = 2^-d · sum over all 2^d choices C = union of some of the G_k
                 of (v(C ∪ {i}) − v(C)),

    which is what shap's ``PartitionExplainer`` computes when its budget allows.
    """
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    parent: dict[int, int] = {}
    for k, (left, right) in enumerate(np.asarray(linkage)[:, :2].astype(int)):
        members[n + k] = members[left] + members[right]
        parent[left] = parent[right] = n + k
    masks, slices = [], []
    for i in range(n):
        siblings, node = [], i
        while node in parent:
            up = parent[node]
            left, right = (int(c) for c in linkage[up - n, :2])
            siblings.append(members[right if left == node else left])
            node = up
        start = len(masks)
        for choice in range(1 << len(siblings)):
            context = np.zeros(n, dtype=bool)
            for k, group in enumerate(siblings):
                if choice >> k & 1:
                    context[group] = True
            with_i = context.copy()
            with_i[i] = True
            masks += [context, with_i]
        slices.append(slice(start, len(masks)))
    v = np.asarray(value(np.array(masks)), dtype=np.float64)
    return np.array([np.mean(v[s][1::2] - v[s][0::2]) for s in slices])


def patch_linkage(grid: tuple[int, int]) -> np.ndarray:
    """A hierarchy of the patches that merges neighbours first: Ward linkage of the
    patch centres (row-major patch order, as in ``ImagePatchGame``)."""
    from scipy.cluster.hierarchy import linkage

    rows, cols = grid
    centres = np.array([(r, c) for r in range(rows) for c in range(cols)], dtype=np.float64)
    return linkage(centres, method="ward")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def estimators(game: Any, model: torch.nn.Module, target: int, budget: int) -> list[Run]:
    """Every estimator on the same game, each given about ``budget`` model evaluations."""
    import shap

    from xai.integrations import shap as xshap

    n = game.n
    ones, zeros = np.ones(n), np.zeros((1, n))
    runs = []

    def tabular(
        name: str, budget_text: str, call: Callable[[CountedGame], Any], drawn: bool = True
    ) -> None:
        counted = CountedGame(game)
        result, seconds = _timed(lambda: call(counted))
        values = np.asarray(getattr(result, "values", result), dtype=np.float64).reshape(n)
        runs.append(Run(name, values, counted.evaluations, seconds, budget_text, drawn))

    def permutation(evaluations: int, name: str, drawn: bool = True) -> None:
        samples = max(1, (evaluations - 2) // (2 * (n - 1)))  # 2 (n - 1) per antithetic pair
        tabular(
            name,
            f"{samples} antithetic pairs of orders",
            lambda f: xai.shapley.permutation_shapley(
                xai.shapley.FunctionGame(f, n_features=n), samples, seed=0
            ),
            drawn,
        )

    permutation(budget, "xai permutation")
    tabular(
        "xai kernel_shap",
        f"n_samples={budget - 2}",
        lambda f: xai.shapley.kernel_shap(
            xai.shapley.FunctionGame(f, n_features=n), budget - 2, seed=0, n_bootstrap=0
        ),
    )
    np.random.seed(0)  # shap's Kernel sampling uses numpy's global generator
    tabular(
        "shap Kernel",
        f"nsamples={budget - 2}",
        lambda f: xshap.shap_kernel(f, ones, zeros, nsamples=budget - 2),
    )
    hierarchy = patch_linkage(game.grid)

    def partition(f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        masker = shap.maskers.Partition(zeros, clustering=hierarchy)
        explainer = shap.explainers.Partition(f, masker)
        return explainer(ones[None], max_evals=budget, silent=True).values[0]

    _, compile_seconds = _timed(lambda: partition(lambda z: z.sum(axis=1)))
    print(f"(shap Partition's first call compiled with numba: {compile_seconds:.1f} s, not timed)")
    np.random.seed(0)  # Partition breaks ties in its queue with numpy's global generator
    tabular("shap Partition", f"max_evals={budget}", partition)
    # Partition stops early (its hierarchy's Owen values are complete): sampling's error
    # at that smaller budget, for a fair comparison.
    permutation(runs[-1].evaluations, "xai permutation at Partition's budget", drawn=False)

    # captum's ShapleyValueSampling on the image itself, through xai.integrations.captum:
    # the patches are its feature_mask, the game's blurred image its baseline, and
    # perturbations_per_eval puts n perturbed images through the model per call (captum's
    # default of one costs several times as long, far more on a busy machine).
    from xai.integrations.captum import shapley_value_sampling

    orders = max(1, budget // n)
    calls = [0]

    def count(_module: Any, inputs: tuple[torch.Tensor, ...]) -> None:
        calls[0] += inputs[0].shape[0]

    def sampling() -> torch.Tensor:
        explained = shapley_value_sampling(
            model,
            game.image[None],
            game.baseline[None],
            target=target,
            feature_mask=game.patch_of_pixel[None, None],
            n_samples=orders,
            perturbations_per_eval=n,
        )
        return explained.attributions

    torch.manual_seed(0)  # captum draws its orders with torch's generator
    hook = model.register_forward_pre_hook(count)
    try:
        attributions, seconds = _timed(sampling)
    finally:
        hook.remove()
    pixels = attributions[0, 0].detach().double().cpu().numpy()
    patch = game.patch_of_pixel.cpu().numpy()  # every pixel of a patch holds its value
    values = np.array([pixels[patch == k][0] for k in range(n)])
    runs.append(
        Run(
            "captum ShapleyValueSampling",
            values,
            calls[0],
            seconds,
            f"n_samples={orders}, perturbations_per_eval={n}",
        )
    )
    return runs


def _score_table(exact: Any, exact_seconds: float, runs: list[Run]) -> list[str]:
    from scipy.stats import spearmanr

    phi = np.asarray(exact.values, dtype=np.float64)
    gap_total = exact.full_value - exact.base_value
    top = set(np.argsort(-phi)[:3])
    lines = [
        "| estimator | budget | evaluations | seconds | max abs error | relative L2 error "
        "| Spearman ρ | top-3 patches | efficiency gap |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [Run("exact (xai.exact_shapley)", phi, exact.n_evaluations, exact_seconds, "all")]
    for run in rows + runs:
        error = run.values - phi
        rho = float(spearmanr(run.values, phi).statistic)
        overlap = len(top & set(np.argsort(-run.values)[:3]))
        gap = abs(run.values.sum() - gap_total)
        lines.append(
            f"| {run.name} | {run.budget} | {run.evaluations:,} | {run.seconds:.1f} "
            f"| {np.abs(error).max():.4f} | {np.linalg.norm(error) / np.linalg.norm(phi):.4f} "
            f"| {rho:.3f} | {overlap}/3 | {gap:.1e} |"
        )
    return lines


def _relative(values: np.ndarray, phi: np.ndarray) -> float:
    return float(np.linalg.norm(values - phi) / np.linalg.norm(phi))


def draw(image: torch.Tensor, game: Any, exact: Any, runs: list[Run], title: str) -> Any:
    """The image, the exact patch map, each estimator's map on one colour scale (red
    for, blue against the class, white 0), and estimates against exact values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phi = np.asarray(exact.values, dtype=np.float64)
    pixels = image[0].cpu().numpy()
    rows, cols = game.grid
    height, width = pixels.shape
    panels = [("exact Shapley (xai.exact_shapley)", phi, f"{exact.n_evaluations:,} evaluations")]
    panels += [
        (r.name, r.values, f"{r.evaluations:,} evals, rel. L2 error {_relative(r.values, phi):.3f}")
        for r in runs
        if r.drawn
    ]
    scale = max(float(np.abs(values).max()) for _, values, _ in panels)
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.6), layout="constrained")
    flat = list(axes.ravel())

    def grid_lines(ax: Any, color: str) -> None:
        for r in range(1, rows):
            ax.axhline(r * height / rows - 0.5, color=color, linewidth=0.8, linestyle=":")
        for c in range(1, cols):
            ax.axvline(c * width / cols - 0.5, color=color, linewidth=0.8, linestyle=":")
        ax.set_xticks([])
        ax.set_yticks([])

    flat[0].imshow(pixels, cmap="gray", vmin=0, vmax=1)
    grid_lines(flat[0], "yellow")
    flat[0].set_title(title, fontsize=11)
    centres = [
        ((c + 0.5) * width / cols - 0.5, (r + 0.5) * height / rows - 0.5)
        for r in range(rows)
        for c in range(cols)
    ]
    mappable = None
    for ax, (name, values, subtitle) in zip(flat[1:], panels, strict=False):
        mappable = ax.imshow(game.to_map(values), cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.contour(pixels, levels=[0.1], colors="black", linewidths=0.8)
        grid_lines(ax, "grey")
        for (x, y), value in zip(centres, values, strict=True):
            color = "white" if abs(value) > 0.6 * scale else "black"
            text = f"{value:.2f}".replace("-0.00", "0.00")
            ax.text(x, y, text, ha="center", va="center", fontsize=9, color=color)
        ax.set_title(f"{name}\n{subtitle}", fontsize=11)
    bar = fig.colorbar(mappable, ax=flat, shrink=0.8, pad=0.01, aspect=30)
    bar.set_label("patch value: contribution to the class logit (0 = white)", fontsize=10)

    ax = flat[7]
    every = np.concatenate([values for _, values, _ in panels])
    pad = 0.08 * (every.max() - every.min())
    low, high = float(every.min() - pad), float(every.max() + pad)
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="estimate = exact")
    markers = "osD^v<>"
    for k, (name, values, _) in enumerate(panels[1:]):
        ax.scatter(phi, values, s=22, marker=markers[k % len(markers)], label=name, alpha=0.8)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("exact Shapley value of a patch")
    ax.set_ylabel("estimated value")
    ax.set_title("every patch: estimate against exact", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a 3 x 3 grid (512 coalitions)")
    parser.add_argument("--out", type=Path, default=Path("docs/images/shap_vs_exact.png"))
    args = parser.parse_args()
    grid, budget = ((3, 3), 128) if args.fast else ((4, 4), 2048)

    model = xai.models.pretrained("fashion-mnist")
    images, labels = xai.models.sample_batch()
    image = images[SAMPLE]
    with torch.no_grad():
        target = int(model(image[None]).argmax(1))
    game = xai.shapley.ImagePatchGame(model, image, target, grid=grid, batch_size=512)
    names = model.class_names
    print(
        f"sample {SAMPLE} ({names[int(labels[SAMPLE])]}), explained for its predicted class "
        f"{target} ({names[target]}); {grid[0]} x {grid[1]} patches = {game.n} players, "
        f"{1 << game.n:,} coalitions; absent patches blurred"
    )
    exact, exact_seconds = _timed(lambda: xai.exact_shapley(game))
    print(
        f"v(∅) = {exact.base_value:.4f}, v(all) = {exact.full_value:.4f}, "
        f"sum of exact values = {np.sum(exact.values):.4f}"
    )
    runs = estimators(game, model, target, budget)
    print()
    print("\n".join(_score_table(exact, exact_seconds, runs)))

    partition = next(r for r in runs if r.name == "shap Partition")
    counted = CountedGame(game)
    owen = owen_values(counted, game.n, patch_linkage(grid))
    print()
    print(
        f"shap Partition vs the exact Owen values of its hierarchy ({counted.evaluations:,} "
        f"evaluations): max abs difference {np.abs(partition.values - owen).max():.1e}; "
        f"Owen vs Shapley: {np.abs(owen - exact.values).max():.4f}"
    )
    title = (
        f"input: {names[int(labels[SAMPLE])]} (sample {SAMPLE}), {grid[0]} x {grid[1]} patches\n"
        f"class {names[target]}: v(∅) = {exact.base_value:.2f}, v(all) = {exact.full_value:.2f}"
    )
    print(f"wrote {save_figure(draw(image, game, exact, runs, title), args.out)}")


if __name__ == "__main__":
    main()
