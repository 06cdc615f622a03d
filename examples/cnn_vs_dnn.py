"""The coursework comparison: a CNN (GAPCNN) against a plain deep network (MLP).

Both are trained on the same stratified tenth of Fashion-MNIST (5,400 training and 600
validation images; the test tenth has 1,000) with the same budget: Adam on the
cross-entropy, batch 128, a one-cycle learning rate peaking at 3e-3 over at most 15
epochs, and early stopping on validation accuracy (patience 4; the best epoch's weights
are restored). It prints the comparison table (test accuracy, parameters, best epoch,
epochs run, training time) and each model's per-class precision, recall and F1, and saves
the training curves and the test confusion matrices.

Time: on two otherwise idle CPU cores a GAPCNN epoch over 5,400 images takes 3-5 s and
an MLP epoch about 0.1 s, so the full run (at most 15 epochs each) takes about 70 s
(measured: 58 s and 2 s of training); it gets several times slower when other processes
compete for the cores.
``--fast`` trains on 2 % of the data (1,080 training images) for at most 3 epochs, in
about 10 s. Needs Debian's
``dataset-fashion-mnist`` package (or ``--data DIR`` with the IDX files):

    python examples/cnn_vs_dnn.py [--fast] [--out docs/images/cnn_vs_dnn.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import xai
from xai.viz.grids import save_figure
from xai.viz.training import plot_comparison

FULL = {"fraction": 0.1, "epochs": 15, "patience": 4}
FAST = {"fraction": 0.02, "epochs": 3, "patience": 2}
TRAINING = {"lr": 3e-3, "schedule": "onecycle", "batch_size": 128}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="2%% of the data, at most 3 epochs")
    parser.add_argument("--out", type=Path, default=Path("docs/images/cnn_vs_dnn.png"))
    parser.add_argument("--data", type=Path, default=None, help="folder with the IDX files")
    parser.add_argument("--seed", type=int, default=0, help="data split and initialisation")
    args = parser.parse_args()
    setting = FAST if args.fast else FULL

    try:
        data = xai.data.splits(
            "fashion-mnist", args.data, fraction=setting["fraction"], seed=args.seed
        )
    except FileNotFoundError:
        print(
            "Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist "
            "(or pass --data DIR with its IDX files)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    print(
        f"Fashion-MNIST, {setting['fraction']:.0%} of it: {len(data.train)} training, "
        f"{len(data.val)} validation, {len(data.test)} test images; at most "
        f"{setting['epochs']} epochs, patience {setting['patience']}"
    )

    comparison = xai.training.compare(
        data,
        epochs=setting["epochs"],
        patience=setting["patience"],
        seed=args.seed,
        progress=not args.fast,
        **TRAINING,
    )
    print()
    print(comparison.table())
    for name, evaluation in comparison.evaluations.items():
        print(f"\n{name}: per-class metrics on the test images")
        print(evaluation.table())

    figure = plot_comparison(
        comparison,
        f"GAPCNN vs MLP on {setting['fraction']:.0%} of Fashion-MNIST: training curves "
        f"({len(data.train):,} training, {len(data.val):,} validation images) and "
        f"confusion matrices on the {len(data.test):,} test images",
    )
    print(f"\nwrote {save_figure(figure, args.out)}")


if __name__ == "__main__":
    main()
