"""Explaining a detector: a small centre-heatmap detector trained on Fashion-MNIST items
pasted into canvases, and each of its detections explained with ``xai.targets.Box``.

Every 80 x 80 canvas holds one to three Fashion-MNIST items, each placed at a seeded,
uniformly random position by ``xai.data.paste`` (positions are drawn again until no two
items' boxes overlap by more than 15 % of the smaller one; where they touch, the brighter
pixel wins). An item's box is the tight box of its pixels brighter than 0.05.

The detector is written here, CenterNet-style (Zhou et al. 2019, "Objects as Points"):
five 3 x 3 convolutions with batch norm and ReLU (the first two of stride 2, the last two
dilated, so a cell sees 47 px), then three 1 x 1 heads on its 20 x 20 grid of cells: a
heat map per class (sigmoid), a box size (log width and height) and the centre's offset
in its cell. Every cell decodes into one candidate box in input pixels, so the model
returns the dense format that ``Box`` reads: ``{"boxes": (N, 400, 4), "scores": (N, 400,
10)}``. It is trained with the focal loss on Gaussian bumps at the item centres and an L1
loss on the sizes and offsets (Adam, batch 32, a one-cycle learning rate peaking at 5e-3),
for 10 epochs of 5,000 canvases drawn afresh each epoch.

The detections of a canvas are the cells whose best class score is a local maximum
(3 x 3), best first, each with that class. Quality, on 1,000 canvases from the test
split: of each canvas's n items, how many the top n detections find at IoU >= 0.5 with
the class right (each detection finds at most one item); the same with any class; and
the mean, over items, of the best IoU of a top-n detection of the right class. A trivial
baseline guesses, with each item's true class, a box of the training items' mean size at
the canvas centre.

Then, on the first four test canvases with two or three items, the detection that
locates each item (IoU >= 0.5, any class) is explained: ``Box(detection box, detection
class)`` matches that very candidate (IoU 1), and Grad-CAM and Score-CAM explain its
score at the last convolution's ReLU. A table gives each map's share of energy in the
item's box (``energy_pointing_game``).

About 90 s on two CPU cores shared with other work (80 s of it training, with one torch
thread: ``--threads``); ``--fast`` trains 3 epochs of 1,500 canvases and tests on 200
(about 10 s). Seeded throughout. Needs Debian's ``dataset-fashion-mnist`` package
(or ``--data DIR`` with the IDX files):

    python examples/detection.py [--fast] [--out docs/images/detection.png]
        [--save-model detector.pt] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import xai
from xai.metrics import energy_pointing_game
from xai.targets import Box
from xai.viz._mpl import pyplot
from xai.viz.grids import save_figure
from xai.viz.overlay import overlay

SIZE = 80  # canvas side in pixels
STRIDE = 4  # input pixels per output cell: a 20 x 20 grid
MAX_ITEMS = 3  # items per canvas: 1 to this many
MAX_OVERLAP = 0.15  # of the smaller box: how much two items' boxes may overlap
THRESHOLD = 0.05  # item pixels: intensity above this (the model card's definition)
BASE = 16.0  # px: the box size that a size output of 0 means
IOU = 0.5
LAYER = "body.14"  # the last convolution's ReLU: 32 maps of 20 x 20
METHODS = {"gradcam": "Grad-CAM", "scorecam": "Score-CAM"}
SHOWN = 4  # test canvases explained
FULL = {"train": 5000, "test": 1000, "epochs": 10}  # training canvases per epoch
FAST = {"train": 1500, "test": 200, "epochs": 3}
TRAINING = {"lr": 5e-3, "batch_size": 32}


# ------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Scenes:
    """Canvases of one to ``MAX_ITEMS`` items, and every item's box and label.

    Attributes:
        canvases: ``(N, 1, SIZE, SIZE)`` float32 in [0, 1].
        boxes: ``(N, MAX_ITEMS, 4)`` int64 tight boxes ``(x0, y0, x1, y1)``, ``x1, y1``
            exclusive; zeros where a canvas has fewer items.
        labels: ``(N, MAX_ITEMS)`` int64, -1 where a canvas has fewer items.
        class_names: the labels' names.
    """

    canvases: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.canvases)

    def items(self, index: int) -> list[tuple[np.ndarray, int]]:
        """Canvas ``index``'s items: their boxes and labels."""
        keep = self.labels[index] >= 0
        return list(zip(self.boxes[index][keep], self.labels[index][keep].tolist(), strict=True))


def tight_box(mask: np.ndarray) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of a mask's true pixels, ``x1, y1`` exclusive."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.int64)


def overlap(boxes: np.ndarray) -> float:
    """The largest intersection of two of ``boxes``, as a share of the smaller one."""
    worst = 0.0
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            w = min(a[2], b[2]) - max(a[0], b[0])
            h = min(a[3], b[3]) - max(a[1], b[1])
            if w > 0 and h > 0:
                smaller = min(np.prod(a[2:] - a[:2]), np.prod(b[2:] - b[:2]))
                worst = max(worst, float(w * h / smaller))
    return worst


def make_scenes(data: xai.data.Dataset, count: int, seed: int) -> Scenes:
    """``count`` canvases of 1 to ``MAX_ITEMS`` items of ``data``, each item used once.

    The number of items is uniform; the items are a seeded permutation of ``data``; the
    positions are ``xai.data.paste``'s, drawn again (next seed, at most 1,000 times)
    while two boxes overlap by more than ``MAX_OVERLAP`` of the smaller one.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.labels))
    counts = rng.integers(1, MAX_ITEMS + 1, count)
    if counts.sum() > len(order):
        raise ValueError(f"{count} canvases need {counts.sum()} items; the split has {len(order)}")
    canvases = np.zeros((count, 1, SIZE, SIZE), dtype=np.float32)
    boxes = np.zeros((count, MAX_ITEMS, 4), dtype=np.int64)
    labels = np.full((count, MAX_ITEMS), -1, dtype=np.int64)
    start = 0
    for i, k in enumerate(counts.tolist()):
        chosen = order[start : start + k]
        start += k
        for attempt in range(1000):
            pasted = xai.data.paste(
                data.images[chosen],
                data.labels[chosen],
                size=SIZE,
                seed=seed * 1_000_003 + i * 1000 + attempt,
                threshold=THRESHOLD,
            )
            tight = np.stack([tight_box(mask) for mask in pasted.masks])
            if overlap(tight) <= MAX_OVERLAP:
                break
        canvases[i, 0] = pasted.canvases[:, 0].max(axis=0)
        boxes[i, :k] = tight
        labels[i, :k] = pasted.labels
    return Scenes(canvases, boxes, labels, tuple(data.class_names))


# ------------------------------------------------------------------------------ model


class CentreNet(nn.Module):
    """A centre-heatmap detector: every cell of a stride-4 grid scores each class for an
    object centred in it, and predicts that object's box.

    ``forward`` returns ``{"boxes": (N, M, 4), "scores": (N, M, classes)}`` with one
    candidate per cell (M = cells), boxes ``(x0, y0, x1, y1)`` in input pixels and scores
    the heat maps' sigmoid: the dense format ``xai.targets.Box`` reads.
    """

    def __init__(self, classes: int = 10, channels: tuple[int, ...] = (16, 32, 32, 32, 32)):
        super().__init__()
        c5 = channels[-1]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip((1, *channels[:-1]), channels, strict=True)):
            stride, dilation = (2, 1) if i < 2 else (1, 1 if i == 2 else 2)
            layers += [
                nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.heat = nn.Conv2d(c5, classes, 1)
        self.size = nn.Conv2d(c5, 2, 1)
        self.offset = nn.Conv2d(c5, 2, 1)
        with torch.no_grad():  # start every cell at a score of about 0.1 (focal-loss prior)
            self.heat.bias.fill_(-2.2)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The raw maps: class logits ``(N, K, g, g)``, log sizes and offset logits
        ``(N, 2, g, g)`` (width first, then height; x first, then y)."""
        features = self.body(x)
        return self.heat(features), self.size(features), self.offset(features)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, size, offset = self.heads(x)
        return decode(logits, size, offset)


def decode(logits: torch.Tensor, size: torch.Tensor, offset: torch.Tensor) -> dict[str, Any]:
    """One candidate per cell: centre at the cell's corner plus the offset (in cells),
    size ``BASE * exp(size)``, in input pixels; scores the logits' sigmoid."""
    _, _, rows, cols = logits.shape
    ys, xs = torch.meshgrid(
        torch.arange(rows, dtype=logits.dtype),
        torch.arange(cols, dtype=logits.dtype),
        indexing="ij",
    )
    shift = offset.sigmoid()
    cx, cy = (xs + shift[:, 0]) * STRIDE, (ys + shift[:, 1]) * STRIDE
    wh = BASE * size.clamp(-4.0, 4.0).exp()
    w, h = wh[:, 0], wh[:, 1]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return {
        "boxes": boxes.flatten(1, 2),
        "scores": logits.sigmoid().flatten(2).transpose(1, 2),
    }


# --------------------------------------------------------------------------- training


def centre_targets(
    boxes: torch.Tensor, labels: torch.Tensor, classes: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training targets on the grid: Gaussian bumps (peak 1 at each centre's cell) per
    class ``(B, K, g, g)``; log sizes and offsets ``(B, 2, g, g)`` and where they count
    ``(B, g, g)`` bool, at the centre cells."""
    n = len(boxes)
    heat = torch.zeros(n, classes, grid, grid)
    size = torch.zeros(n, 2, grid, grid)
    offset = torch.zeros(n, 2, grid, grid)
    where = torch.zeros(n, grid, grid, dtype=torch.bool)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    rows = torch.arange(n)
    for t in range(boxes.shape[1]):
        valid = labels[:, t] >= 0
        box = boxes[:, t].float()
        wh = (box[:, 2:] - box[:, :2]).clamp_min(1.0)
        centre = (box[:, :2] + box[:, 2:]) / 2 / STRIDE
        cell = centre.floor().clamp(0, grid - 1)
        sigma = (0.15 * wh.prod(dim=1).sqrt() / STRIDE).clamp_min(0.7)
        distance = (xs - cell[:, 0, None, None]) ** 2 + (ys - cell[:, 1, None, None]) ** 2
        bump = torch.exp(-distance / (2 * sigma[:, None, None] ** 2)) * valid[:, None, None]
        category = labels[:, t].clamp_min(0)
        heat[rows, category] = torch.maximum(heat[rows, category], bump)
        i, j = cell[valid, 1].long(), cell[valid, 0].long()
        kept = rows[valid]
        size[kept, :, i, j] = torch.log(wh[valid] / BASE)
        offset[kept, :, i, j] = centre[valid] - cell[valid]
        where[kept, i, j] = True
    return heat, size, offset, where


def detection_loss(
    model: CentreNet, x: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """CenterNet's loss: the focal loss on the heat maps (alpha 2, beta 4), plus L1 on the
    log sizes and the offsets at the centre cells, each over the number of items."""
    logits, size, offset = model.heads(x)
    heat, size_t, offset_t, where = centre_targets(boxes, labels, logits.shape[1], logits.shape[-1])
    p = logits.sigmoid()
    positive = heat == 1.0
    items = positive.sum().clamp_min(1)
    focal = -(
        (F.logsigmoid(logits) * (1 - p) ** 2)[positive].sum()
        + (F.logsigmoid(-logits) * p**2 * (1 - heat) ** 4)[~positive].sum()
    )
    at = where[:, None].expand_as(size)
    l1_size = (size - size_t).abs()[at].sum()
    l1_offset = (offset.sigmoid() - offset_t).abs()[at].sum()
    return (focal + l1_size + l1_offset) / items


@dataclass
class Trained:
    """What ``train`` did."""

    epochs: int
    seconds: float
    losses: list[float]


def train(
    model: CentreNet, data: xai.data.Dataset, count: int, epochs: int, seed: int = 0
) -> Trained:
    """Adam with a one-cycle learning rate on shuffled batches (``TRAINING``); every
    epoch on ``count`` fresh canvases (``make_scenes`` with seed ``seed + epoch``)."""
    batch = TRAINING["batch_size"]
    steps = (count + batch - 1) // batch
    optimiser = torch.optim.Adam(model.parameters(), lr=TRAINING["lr"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=TRAINING["lr"], total_steps=epochs * steps
    )
    generator = torch.Generator().manual_seed(seed)
    started, losses = time.perf_counter(), []
    model.train()
    for epoch in range(epochs):
        scenes = make_scenes(data, count, seed=seed + epoch)
        x = torch.from_numpy(scenes.canvases)
        boxes, labels = torch.from_numpy(scenes.boxes), torch.from_numpy(scenes.labels)
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            loss = detection_loss(model, x[index], boxes[index], labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / len(x))
    model.eval()
    return Trained(epochs, time.perf_counter() - started, losses)


# ------------------------------------------------------------------------- evaluation


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4): (n, m)."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp_min(0).prod(dim=-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(dim=-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-9)


@dataclass(frozen=True)
class Detection:
    """One detection: its candidate's index in the dense output, box, class and score."""

    candidate: int
    box: torch.Tensor
    category: int
    score: float


def peaks(output: dict[str, torch.Tensor], top: int) -> list[list[Detection]]:
    """Each image's ``top`` best detections, best first: the cells whose best class
    score is a local maximum (3 x 3) of the cells' best class scores, with that class."""
    scores, boxes = output["scores"].detach(), output["boxes"].detach()
    n, m, _ = scores.shape
    grid = math.isqrt(m)
    best, category = scores.max(dim=2)
    heat = best.reshape(n, 1, grid, grid)
    kept = heat * (heat == F.max_pool2d(heat, 3, stride=1, padding=1))
    values, index = kept.flatten(1).topk(top, dim=1)
    return [
        [
            Detection(cell, boxes[i, cell].clone(), int(category[i, cell]), value)
            for value, cell in zip(values[i].tolist(), index[i].tolist(), strict=True)
            if value > 0  # fewer peaks than ``top``: the rest are no detections
        ]
        for i in range(n)
    ]


def match(
    detections: list[Detection], items: list[tuple[np.ndarray, int]], any_class: bool = False
) -> dict[int, Detection]:
    """Greedy matching, best detection first: each takes the unmatched item (of its class
    unless ``any_class``) with the largest IoU, at least ``IOU``. Item index -> detection."""
    matched: dict[int, Detection] = {}
    for det in detections:
        best, best_iou = -1, IOU
        for j, (box, label) in enumerate(items):
            if j in matched or (label != det.category and not any_class):
                continue
            iou = float(box_iou(det.box[None], torch.as_tensor(box, dtype=torch.float32)[None]))
            if iou >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            matched[best] = det
    return matched


@dataclass(frozen=True)
class Quality:
    """Top-n detection quality on a set of canvases (n: each canvas's number of items)."""

    items: int
    recall: float  # share of items found at IoU >= IOU with the class right
    located: float  # the same with any class
    mean_iou: float  # mean over items of the best IoU of a top-n detection of its class


def evaluate(model: CentreNet, scenes: Scenes, batch: int = 100) -> Quality:
    """The top-n detections of every canvas against its n items."""
    found, located, ious, total = 0, 0, 0.0, 0
    with torch.no_grad():
        for start in range(0, len(scenes), batch):
            output = model(torch.from_numpy(scenes.canvases[start : start + batch]))
            for i, detections in enumerate(peaks(output, MAX_ITEMS)):
                items = scenes.items(start + i)
                top = detections[: len(items)]
                found += len(match(top, items))
                located += len(match(top, items, any_class=True))
                for box, label in items:
                    same = [d.box for d in top if d.category == label]
                    if same:
                        truth = torch.as_tensor(box, dtype=torch.float32)[None]
                        ious += float(box_iou(torch.stack(same), truth).max())
                total += len(items)
    return Quality(total, found / total, located / total, ious / total)


def centre_guess(train_scenes: Scenes, scenes: Scenes) -> Quality:
    """The baseline: for every item, a box of the training items' mean size at the
    canvas centre, with the item's true class."""
    valid = train_scenes.labels >= 0
    wh = (train_scenes.boxes[..., 2:] - train_scenes.boxes[..., :2])[valid].mean(axis=0)
    guess = torch.tensor([SIZE / 2 - wh[0] / 2, SIZE / 2 - wh[1] / 2, 0, 0], dtype=torch.float32)
    guess[2:] = guess[:2] + torch.as_tensor(wh, dtype=torch.float32)
    truth = torch.as_tensor(scenes.boxes[scenes.labels >= 0], dtype=torch.float32)
    ious = box_iou(truth, guess[None])[:, 0]
    hit = float((ious >= IOU).float().mean())
    return Quality(len(truth), hit, hit, float(ious.mean()))


# ------------------------------------------------------------------------- explaining


@dataclass
class Explained:
    """One item of a shown canvas, the detection that locates it, and the maps that
    explain that detection (by method)."""

    canvas: int
    item: int
    box: np.ndarray
    label: int
    detection: Detection | None
    maps: dict[str, torch.Tensor]
    energy: dict[str, float]

    def iou(self) -> float:
        """The detection's IoU with the item's box."""
        if self.detection is None:
            return 0.0
        truth = torch.as_tensor(self.box, dtype=torch.float32)[None]
        return float(box_iou(self.detection.box[None], truth))


def explain_items(model: CentreNet, scenes: Scenes, shown: list[int]) -> list[Explained]:
    """Every item of the ``shown`` canvases with the top-n detection that locates it
    (IoU >= ``IOU``, any class), explained by each method of ``METHODS`` with
    ``Box(detection box, detection class)``: that very candidate, at IoU 1."""
    x = torch.from_numpy(scenes.canvases[shown])
    with torch.no_grad():
        detections = peaks(model(x), MAX_ITEMS)
    rows: list[Explained] = []
    for i, canvas in enumerate(shown):
        items = scenes.items(canvas)
        located = match(detections[i][: len(items)], items, any_class=True)
        for j, (box, label) in enumerate(items):
            rows.append(Explained(canvas, j, box, label, located.get(j), {}, {}))
    found = [(r, r.detection) for r in rows if r.detection is not None]
    if not found:
        return rows
    inputs = torch.from_numpy(scenes.canvases[[r.canvas for r, _ in found]])
    target = Box(torch.stack([d.box for _, d in found]), [d.category for _, d in found])
    truth = torch.as_tensor(np.stack([r.box for r, _ in found]))
    for method in METHODS:
        options = {"batch_size": 32} if method == "scorecam" else {}
        e = xai.explain(model, inputs, method=method, layer=LAYER, target=target, **options)
        # Box matched each detection's own candidate: the explained score is its score
        expected = torch.tensor([d.score for _, d in found])
        torch.testing.assert_close(e.scores, expected, rtol=1e-4, atol=1e-5)
        shares = energy_pointing_game(e.maps, truth).shares.tolist()
        for (r, _), saliency, share in zip(found, e.maps, shares, strict=True):
            r.maps[method] = saliency
            r.energy[method] = share
    return rows


def table(rows: list[Explained], names: tuple[str, ...]) -> str:
    """The markdown table of what was explained."""
    heads = " | ".join(f"{label}: energy in item box %" for label in METHODS.values())
    lines = [
        f"| canvas | item | class | item box | detected as | detection box | IoU | score | "
        f"{heads} |",
        "|---:|---:|---|---|---|---|---:|---:|" + "---:|" * len(METHODS),
    ]
    for r in rows:
        truth = ", ".join(str(int(v)) for v in r.box)
        start = f"| {r.canvas} | {r.item + 1} | {names[r.label]} | {truth} |"
        if r.detection is None:
            lines.append(
                f"{start} not located | - | - | - | " + " | ".join("-" for _ in METHODS) + " |"
            )
            continue
        box = ", ".join(f"{round(v, 1) + 0.0:.1f}" for v in r.detection.box.tolist())  # no -0.0
        energy = " | ".join(f"{100 * r.energy[m]:.1f}" for m in METHODS)
        lines.append(
            f"{start} {names[r.detection.category]} | {box} | {r.iou():.2f} | "
            f"{r.detection.score:.3f} | {energy} |"
        )
    return "\n".join(lines)


def _rectangle(plt: Any, box: Any, **style: Any) -> Any:
    """A matplotlib rectangle for ``(x0, y0, x1, y1)`` pixel edges on ``imshow``'s grid."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, **style)


def figure(rows: list[Explained], scenes: Scenes, title: str, out: Path) -> Path:
    """One row per shown canvas: the canvas with its items' boxes (white) and their
    detections (green, dashed), then each item's maps with the explained detection."""
    plt = pyplot()
    shown = sorted({r.canvas for r in rows})
    columns = 1 + MAX_ITEMS * len(METHODS)
    fig, axes = plt.subplots(
        len(shown), columns, figsize=(2.5 * columns, 3.0 * len(shown)), layout="constrained"
    )
    axes = np.atleast_2d(axes)
    names = scenes.class_names
    for row, canvas in enumerate(shown):
        image = scenes.canvases[canvas, 0]
        mine = [r for r in rows if r.canvas == canvas]
        ax = axes[row, 0]
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        for r in mine:
            ax.add_patch(_rectangle(plt, r.box, color="white", lw=1.2))
            if r.detection is not None:
                ax.add_patch(_rectangle(plt, r.detection.box, color="lime", lw=1.6, ls="--"))
            ax.text(
                float(r.box[0]) + 1.5, float(r.box[1]) + 1.5, str(r.item + 1), color="black",
                fontsize=10, fontweight="bold", ha="left", va="top",
                bbox={"facecolor": "white", "alpha": 0.85, "pad": 1.5, "lw": 0},
            )  # fmt: skip
        listed = "\n".join(f"{r.item + 1} {names[r.label]}" for r in mine)
        ax.set_title(f"test canvas {canvas}\n{listed}", fontsize=10, loc="left")
        column = 1
        for r in mine:
            for method, label in METHODS.items():
                ax = axes[row, column]
                column += 1
                if r.detection is None:
                    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
                    ax.add_patch(_rectangle(plt, r.box, color="white", lw=1.2))
                    ax.set_title(f"{r.item + 1} {names[r.label]}: not located", fontsize=10)
                    continue
                ax.imshow(overlay(image, r.maps[method].numpy(), alpha=0.5))
                ax.add_patch(_rectangle(plt, r.detection.box, color="white", lw=1.6, ls="--"))
                right = r.detection.category == r.label
                what = names[r.label] + ("" if right else f" as {names[r.detection.category]}")
                ax.set_title(
                    f"{r.item + 1} {what}, score {r.detection.score:.2f}\n"
                    f"{label}: {100 * r.energy[method]:.0f} % in box",
                    fontsize=10,
                    color="black" if right else "#c0001a",
                )
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[row, column:]:
            ax.axis("off")
    fig.suptitle(title, fontsize=12)
    return save_figure(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="3 epochs of 1,500 canvases")
    parser.add_argument("--data", type=Path, default=None, help="folder with the IDX files")
    parser.add_argument("--out", type=Path, default=Path("docs/images/detection.png"))
    parser.add_argument("--save-model", type=Path, default=None, help="write the weights here")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: the convolutions are small)"
    )
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1; got {args.threads}")
    setting = FAST if args.fast else FULL
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        train_data = xai.data.load("fashion-mnist", args.data, "train")
        test_data = xai.data.load("fashion-mnist", args.data, "test")
    except FileNotFoundError:
        print(
            "Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist "
            "(or pass --data DIR with its IDX files)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    first = make_scenes(train_data, setting["train"], seed=0)  # the first epoch's canvases
    test_scenes = test_set(test_data, setting["test"])
    count = int((first.labels >= 0).sum())
    print(
        f"Fashion-MNIST on {SIZE} x {SIZE} canvases, 1-{MAX_ITEMS} items each: "
        f"{setting['epochs']} epochs of {len(first):,} fresh training canvases (the first: "
        f"{count:,} items), {len(test_scenes):,} test canvases from the test split"
    )
    model = CentreNet(len(first.class_names))
    trained = train(model, train_data, setting["train"], setting["epochs"])
    print(
        f"trained in {trained.seconds:.1f} s: {trained.epochs} epochs, loss "
        f"{trained.losses[0]:.3f} -> {trained.losses[-1]:.3f}"
    )
    if args.save_model is not None:
        args.save_model.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.save_model)
        print(f"saved the weights to {args.save_model}")
    quality = evaluate(model, test_scenes)
    guess = centre_guess(first, test_scenes)
    print(
        f"detector on {len(test_scenes):,} test canvases ({quality.items:,} items), top-n "
        f"detections: recall {100 * quality.recall:.1f}% (IoU >= {IOU}, class right), "
        f"located {100 * quality.located:.1f}% (any class), mean IoU {quality.mean_iou:.3f}"
    )
    print(
        f"centre-box guess with the true class: recall {100 * guess.recall:.1f}%, "
        f"mean IoU {guess.mean_iou:.3f}"
    )
    shown = [i for i in range(len(test_scenes)) if (test_scenes.labels[i] >= 0).sum() >= 2]
    explained_at = time.perf_counter()
    rows = explain_items(model, test_scenes, shown[:SHOWN])
    print(
        f"\nexplained the detections of {sum(r.detection is not None for r in rows)} of "
        f"{len(rows)} items with {' and '.join(METHODS.values())} at {LAYER} in "
        f"{time.perf_counter() - explained_at:.1f} s\n"
    )
    print(table(rows, test_scenes.class_names))
    title = (
        f"A centre-heatmap detector on Fashion-MNIST canvases (test recall "
        f"{100 * quality.recall:.0f}% at IoU {IOU}, class right). Each item's detection "
        f"(green, dashed; white: the item's box)\nexplained with xai.targets.Box(detection "
        f"box, detected class) by {' and '.join(METHODS.values())}; red: a wrong class"
    )
    print(f"wrote {figure(rows, test_scenes, title, args.out)}")


def test_set(data: xai.data.Dataset, count: int) -> Scenes:
    """The held-out canvases: ``count`` canvases of the test split (seed 1)."""
    return make_scenes(data, count, seed=1)


if __name__ == "__main__":
    main()
