"""Grad-CAM on a ViT-B/16: xai's default layer against a forward pass and pytorch-grad-cam.

The model is ViT-B/16 in timm's layout (``vits.py``, random weights) at 224 x 224, batch 1
and 8, each image explained for its top-1 class. xai runs with ``layer=None``: its default
layer must be ``blocks.11.norm1`` (the input of the last attention; checked and printed)
and its ``reshape="auto"`` folds the (N, 1 + 14*14, 768) tokens into (N, 768, 14, 14)
maps. pytorch-grad-cam's ``GradCAM`` gets the same module and a ``reshape_transform``
doing that fold explicitly (drop the class token, reshape to the grid, channels first),
as its documentation's ViT example does. Both return what a user shows, maps resized to
the input and min-max normalised. Times are medians of rounds that run xai, the peer and
a plain no-grad ``model(x)`` in turn (``race``), so a busy machine slows them alike; the
ratio to the forward pass is the number the issue sets at most 1.1.

The maps are compared twice. The **final** maps, ``max |theirs - ours|`` in [0, 1], decide
whether the peer's time counts (at most ``TOLERANCE``, as in bench_peers.py). The **raw**
layer-resolution maps, ``max |theirs - ours| / max |ours|``: pytorch-grad-cam's own
weighted sum over its captured activations and gradients, and a reference written here
with one plain hook and ``torch.autograd.grad`` in float64 on a copy of the model. Peak
memory is measured as in bench_peers.py, a fresh process per cell.

    python benchmarks/bench_vit.py [--quick] [--rounds 5] [--no-memory] [--cases vit-b1,vit-b8]

``--quick`` runs a two-block ViT with 32 channels on 32 x 32 inputs instead (seconds).
pytorch-grad-cam needs torchvision, which does not import beside the CPU torch 2.13 the
project pins; run this in the benchmark environment (benchmarks/README.md) to include it.
torchcam and captum are not compared: both hook (N, C, h, w) layers only and have no
reshape for tokens.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vits
from _timing import peak_mb, race, worker_peak_mb
from bench_peers import TOLERANCE

import xai

PEER = "pytorch-grad-cam"
FLOOR = "hand-written"


@dataclass
class Case:
    key: str  # as on the command line: "vit-b8"
    name: str  # the table's title
    model: nn.Module
    x: torch.Tensor
    layer: str  # timm's blocks[-1].norm1: what xai should pick and what the peer is given
    grid: int  # patches per side
    targets: list[int]


def case_names(quick: bool) -> list[str]:
    return ["tiny-b1", "tiny-b8"] if quick else ["vit-b1", "vit-b8"]


def build_case(key: str) -> Case:
    arch, batch = key.split("-b")
    n = int(batch)
    if arch == "vit":
        model, size, title = vits.vit_base_patch16_224(), 224, "ViT-B/16"
    elif arch == "tiny":
        model, size, title = vits.vit_tiny(), 32, "Tiny ViT (2 blocks, 32 channels)"
    else:
        raise ValueError(f"unknown case {key!r}: vit-bN or tiny-bN")
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    grid = size // model.patch_embed.proj.stride[0]
    layer = f"blocks.{len(model.blocks) - 1}.norm1"
    with torch.no_grad():
        targets = model(x).argmax(dim=1).tolist()  # everyone explains the top-1 class
    name = f"{title} 3x{size}x{size}, batch {n}"
    return Case(key, name, model, x, layer, grid, targets)


def fold(grid: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tokens (N, 1 + grid*grid, C) -> maps (N, C, grid, grid): the class token dropped."""

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        n, _, c = tokens.shape
        return tokens[:, 1:].reshape(n, grid, grid, c).permute(0, 3, 1, 2)

    return reshape


def finish(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``), then min-max per sample; plain torch."""
    maps = F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    low = maps.flatten(1).amin(1)[:, None, None]
    high = maps.flatten(1).amax(1)[:, None, None]
    return (maps - low) / (high - low).clamp_min(1e-12)


def reference(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM from its equations in float64, on a copy, with one hook: alpha_k = mean of
    dScore/dA_k over the grid, raw = ReLU(sum_k alpha_k A_k). Returns (raw, final maps)."""
    model = copy.deepcopy(case.model).double()
    store: dict[str, torch.Tensor] = {}
    layer = model.get_submodule(case.layer)
    handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("tokens", o))
    try:
        with torch.enable_grad():
            scores = model(case.x.double())
    finally:
        handle.remove()
    picked = scores[torch.arange(len(case.targets)), torch.tensor(case.targets)]
    (grads,) = torch.autograd.grad(picked.sum(), store["tokens"])
    reshape = fold(case.grid)
    A, G = reshape(store["tokens"].detach()), reshape(grads)
    raw = (G.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1).clamp_min(0)
    return raw, finish(raw, (case.x.shape[2], case.x.shape[3]))


# ------------------------------------------------------------------ implementations


def plain_forward(case: Case) -> Callable[[], object]:
    def forward() -> object:
        with torch.no_grad():
            return case.model(case.x)

    return forward


def xai_explainer(case: Case) -> Callable[[], xai.Explanation]:
    """xai as a user calls it on a ViT: no layer, no reshape; the explainer is reused."""
    explainer = xai.explainer(case.model, "gradcam")
    return lambda: explainer(case.x, case.targets)


def floor_fn(case: Case) -> Callable[[], torch.Tensor]:
    """The least work Grad-CAM at this layer needs, written by hand: one hook makes the
    layer's output a leaf (no graph before it), one ``torch.autograd.grad`` to it, the
    fold, the weights, the ReLU, then the same resize and min-max. What xai costs above
    this is its own overhead; what this costs above a forward pass is the layer's."""
    module = case.model.get_submodule(case.layer)
    rows, classes = torch.arange(len(case.targets)), torch.tensor(case.targets)
    reshape, size = fold(case.grid), (case.x.shape[2], case.x.shape[3])

    def floor_call() -> torch.Tensor:
        store: dict[str, torch.Tensor] = {}

        def hook(m: nn.Module, i: object, out: torch.Tensor) -> torch.Tensor:
            leaf = out.detach().requires_grad_(True)
            store["tokens"] = leaf
            torch.set_grad_enabled(True)
            return leaf

        handle = module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                scores = case.model(case.x)
        finally:
            handle.remove()
        (grads,) = torch.autograd.grad(scores[rows, classes].sum(), store["tokens"])
        A, G = reshape(store["tokens"].detach()), reshape(grads)
        raw = (G.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1).clamp_min(0)
        return finish(raw, size)

    return floor_call


def peer_fn(case: Case) -> Callable[[], torch.Tensor]:
    """pytorch-grad-cam's GradCAM with the fold as ``reshape_transform``: (N, H, W) maps."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = case.model.get_submodule(case.layer)
    targets = [ClassifierOutputTarget(t) for t in case.targets]

    def pgc_call() -> torch.Tensor:
        with pgc.GradCAM(case.model, [module], reshape_transform=fold(case.grid)) as cam:
            return torch.from_numpy(cam(input_tensor=case.x, targets=targets))

    return pgc_call


def peer_raw(case: Case) -> torch.Tensor:
    """pytorch-grad-cam's layer-resolution map, ReLU applied: its own weights and weighted
    sum (``get_cam_image``) over the activations and gradients it captured in one call."""
    import numpy as np
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = case.model.get_submodule(case.layer)
    targets = [ClassifierOutputTarget(t) for t in case.targets]
    with pgc.GradCAM(case.model, [module], reshape_transform=fold(case.grid)) as cam:
        cam(input_tensor=case.x, targets=targets)
        A = cam.activations_and_grads.activations[0].numpy()
        G = cam.activations_and_grads.gradients[0].numpy()
        raw = cam.get_cam_image(case.x, module, targets, A, G)
    return torch.from_numpy(np.maximum(raw, 0))


def peer_available() -> bool:
    try:
        import pytorch_grad_cam  # noqa: F401
    except Exception:  # torchvision's import error, a missing package
        return False
    return True


# ------------------------------------------------------------------------- memory


def worker(key: str, impl: str) -> None:
    """Print the peak resident memory of one call, in MB above the process before it
    (after one warm-up call), as bench_peers.py's worker does."""
    case = build_case(key)
    fns = {"forward": plain_forward, "xai": xai_explainer, FLOOR: floor_fn, PEER: peer_fn}
    fn = fns[impl](case)
    fn()
    print(json.dumps({"peak_mb": peak_mb(fn)}))


def memory(key: str, impl: str) -> float | None:
    return worker_peak_mb(__file__, [key, impl])


# ------------------------------------------------------------------------- report


def relative(theirs: torch.Tensor, ours: torch.Tensor) -> float:
    """max |theirs - ours| / max |ours|, in float64."""
    ours = ours.double()
    gap = (theirs.double().reshape(ours.shape) - ours).abs().max()
    return float(gap / ours.abs().max().clamp_min(1e-300))


def largest(theirs: torch.Tensor, ours: torch.Tensor) -> float:
    """max |theirs - ours| over maps in [0, 1]."""
    return float((theirs.double().reshape(ours.shape) - ours.double()).abs().max())


def run_case(key: str, with_peer: bool, args: argparse.Namespace) -> None:
    case = build_case(key)
    forward = plain_forward(case)
    explain = xai_explainer(case)
    ours = explain()  # also finds and caches the default layer for this input shape
    floor = floor_fn(case)
    fns: dict[str, Callable[[], object]] = {"forward": forward, "xai": explain, FLOOR: floor}
    compared = {"xai": ours.maps, FLOOR: floor()}
    failure = ""
    if with_peer:
        try:
            call = peer_fn(case)
            compared[PEER] = call()
            fns[PEER] = call
        except Exception as error:  # a peer failing is a finding, not a crash
            failure = f"failed: {type(error).__name__}: {error}"
    times = race(fns, args.rounds, 60.0 if not args.quick else 5.0)
    mb = {impl: None if args.no_memory else memory(key, impl) for impl in fns}

    grid = f"{case.grid}x{case.grid}"
    chosen = "yes" if ours.layer == case.layer else "NO"
    print(f"\n### {case.name}\n")
    print(
        f"xai's default layer: `{ours.layer}` (timm's `blocks[-1].norm1` is `{case.layer}`: "
        f"{chosen}); tokens {tuple(case.model.pos_embed.shape[1:])} folded to {grid} maps.\n"
    )
    print("| method | implementation | ms per batch | × forward | × xai | peak MB | agrees |")
    print("|---|---|---:|---:|---:|---:|---|")
    base = times["forward"]
    base_mb = mb["forward"]
    print(
        f"| plain forward | `model(x)`, no grad | {base * 1e3:.1f} | 1.00 | | "
        f"{'-' if base_mb is None else f'{base_mb:.0f}'} | |"
    )
    raw_ref, maps_ref = reference(case)
    rows = [
        ("xai", 'default layer, `reshape="auto"`'),
        (FLOOR, "one hook, one `autograd.grad`: the floor"),
    ]
    if with_peer:
        rows.append((PEER, "`GradCAM`, `reshape_transform=`"))
    gap = largest(compared[FLOOR], ours.maps)
    agreement: dict[str, str] = {
        "xai": "-",
        FLOOR: f"{'yes' if gap <= TOLERANCE else 'NO'} ({gap:.1e})",
    }
    if PEER in compared:
        gap = largest(compared[PEER], ours.maps)
        agreement[PEER] = f"{'yes' if gap <= TOLERANCE else 'NO'} ({gap:.1e})"
    elif with_peer:
        agreement[PEER] = failure
    for impl, how in rows:
        if impl not in times:
            print(f"| gradcam | {impl}: {how} | | | | | {agreement[impl]} |")
            continue
        t = times[impl]
        counted = impl == "xai" or agreement[impl].startswith("yes")
        ratio = f"{t / times['xai']:.2f}" if counted else f"({t / times['xai']:.2f})"
        peak = "-" if mb[impl] is None else f"{mb[impl]:.0f}"
        print(
            f"| gradcam | {impl}: {how} | {t * 1e3:.1f} | {t / base:.2f} | {ratio} | {peak} | "
            f"{agreement[impl]} |"
        )

    size = f"{case.x.shape[2]}x{case.x.shape[3]}"
    print(f"\n| maps compared | raw ({grid}): max abs diff / max | final ({size}): max abs diff |")
    print("|---|---:|---:|")
    print(
        f"| xai vs the float64 reference (one hook, autograd) | "
        f"{relative(ours.raw, raw_ref):.1e} | {largest(ours.maps, maps_ref):.1e} |"
    )
    if PEER in compared:
        print(
            f"| {PEER} vs xai | {relative(peer_raw(case), ours.raw):.1e} | "
            f"{largest(compared[PEER], ours.maps):.1e} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a tiny ViT, batch 1 and 8")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    parser.add_argument("--cases", help="comma-separated, e.g. vit-b1,vit-b8 (or tiny-b8)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with_peer = peer_available()
    rounds = min(args.rounds, 3) if args.quick else args.rounds
    args.rounds = rounds
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"peers: {PEER if with_peer else 'none installed'}; median of up to {rounds} "
        f"round-robin rounds; maps agree when max |theirs - ours| <= {TOLERANCE:g}"
    )
    for key in args.cases.split(",") if args.cases else case_names(args.quick):
        run_case(key, with_peer, args)


if __name__ == "__main__":
    main()
