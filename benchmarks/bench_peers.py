"""Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM beside torchcam, captum, pytorch-grad-cam.

Same model, same inputs, same layer, same target classes for everyone: ResNet-18 and
ResNet-50 (torchvision's layout, ``layer4``) at 224 x 224 with batch 1 and 16, and the
shipped Fashion-MNIST GAPCNN at 28 x 28. Every implementation returns what a user shows,
maps resized to the input and min-max normalised (torchcam's and captum's maps are
finished with the same two torch calls xai uses, inside their timed call). Times are
medians of rounds that run xai, every peer and a plain no-grad ``model(x)`` in turn, so a
busy machine slows them alike. A peer's time counts only where its maps agree with ours:
``max |theirs - ours|`` over the normalised maps at most ``TOLERANCE``
(pytorch-grad-cam resizes with OpenCV and normalises before and after resizing; on the
same raw map that gives the same maps to float rounding). Peak memory is measured in a
fresh process per cell: the peak resident set above what the process held just before
the call (after one warm-up call).

    python benchmarks/bench_peers.py [--quick] [--rounds 5] [--no-memory] [--scorecam-all]
        [--cases gapcnn-b1,resnet50-b16]

pytorch-grad-cam needs torchvision, which does not import beside the CPU torch 2.13 the
project pins; run this in the benchmark environment (benchmarks/README.md) to include it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import resnets
from _timing import peak_mb, race, worker_peak_mb

import xai
from xai.core.maps import minmax, upsample

TOLERANCE = 1e-3  # max |difference| between normalised maps in [0, 1]
METHODS = ("gradcam", "gradcam++", "scorecam", "ablationcam")
PEERS = ("torchcam", "captum", "pytorch-grad-cam")
# Score-CAM's chunk: xai chooses it (batch_size=None, its default); the peers run at their
# own defaults (torchcam 32, pytorch-grad-cam 16 masked images per pass); the row
# "xai-fixed" is xai at a fixed chunk of 64, the maps the others are compared with.
SCORECAM_FIXED = 64
# Score-CAM with the definition the peers share: logits, no baseline, softmax over channels
SCORECAM_OPTIONS = {"softmax": False, "baseline": None, "channel_softmax": True}


@dataclass
class Case:
    key: str  # as on the command line: "resnet50-b16"
    name: str  # the table's title
    model: torch.nn.Module
    x: torch.Tensor
    layer: str
    targets: list[int]


def case_names(quick: bool) -> list[str]:
    if quick:
        return ["gapcnn-b1", "gapcnn-b16", "resnet18-b1"]
    return [
        "gapcnn-b1",
        "gapcnn-b16",
        "resnet18-b1",
        "resnet18-b16",
        "resnet50-b1",
        "resnet50-b16",
    ]


def build_case(name: str) -> Case:
    arch, batch = name.split("-b")
    n = int(batch)
    if arch == "gapcnn":
        model = xai.models.pretrained("fashion-mnist")
        images, _ = xai.models.sample_batch()
        x = images[torch.arange(n) % len(images)].contiguous()
        layer = xai.GradCAM(model).layer_for(x).name
        title = f"GAPCNN (shipped Fashion-MNIST model) 1x28x28, batch {n}, layer {layer}"
    else:
        model = getattr(resnets, arch)()
        x = torch.rand(n, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        layer = "layer4"
        title = f"{'ResNet-18' if arch == 'resnet18' else 'ResNet-50'} 3x224x224, batch {n}"
    with torch.no_grad():
        targets = model(x).argmax(dim=1).tolist()  # everyone explains the top-1 class
    return Case(name, title, model, x, layer, targets)


def finish(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What xai does with raw layer-resolution maps: bilinear resize, then min-max."""
    return minmax(upsample(raw.detach().float(), size))


# ------------------------------------------------------------------ implementations


def xai_fn(case: Case, method: str, fixed: bool = False) -> Callable[[], torch.Tensor]:
    options = dict(SCORECAM_OPTIONS) if method == "scorecam" else {}
    if fixed:
        options["batch_size"] = SCORECAM_FIXED
    explainer = xai.explainer(case.model, method, case.layer, **options)
    return lambda: explainer(case.x, case.targets).maps


PEER_METHODS = {
    "torchcam": ("gradcam", "gradcam++", "scorecam"),
    "captum": ("gradcam",),  # captum has no Grad-CAM++, Score-CAM or Ablation-CAM
    "pytorch-grad-cam": METHODS,
    "xai-fixed": ("scorecam",),
}


def peer_fn(peer: str, case: Case, method: str) -> Callable[[], torch.Tensor]:
    """The peer's call returning (N, H, W) normalised maps, as a user would show them."""
    size = (case.x.shape[2], case.x.shape[3])
    module = dict(case.model.named_modules())[case.layer]
    if peer == "torchcam":
        import torchcam.methods as tc

        cls = {"gradcam": tc.GradCAM, "gradcam++": tc.GradCAMpp, "scorecam": tc.ScoreCAM}[method]

        def torchcam_call() -> torch.Tensor:
            shape = tuple(case.x.shape[1:])
            with cls(case.model, target_layer=case.layer, input_shape=shape) as extractor:
                scores = case.model(case.x)
                maps = extractor(case.targets, scores, normalized=False)[0]
            return finish(maps, size)

        return torchcam_call
    if peer == "captum":
        from captum.attr import LayerGradCam

        def captum_call() -> torch.Tensor:
            explainer = LayerGradCam(case.model, module)
            maps = explainer.attribute(case.x, target=case.targets, relu_attributions=True)
            return finish(maps[:, 0], size)

        return captum_call
    if peer == "pytorch-grad-cam":
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = {
            "gradcam": pgc.GradCAM,
            "gradcam++": pgc.GradCAMPlusPlus,
            "scorecam": pgc.ScoreCAM,
            "ablationcam": pgc.AblationCAM,
        }[method]
        targets = [ClassifierOutputTarget(t) for t in case.targets]

        def pgc_call() -> torch.Tensor:
            with cls(model=case.model, target_layers=[module]) as cam:  # its defaults
                return torch.from_numpy(cam(input_tensor=case.x, targets=targets))

        return pgc_call
    if peer == "xai-fixed":
        return xai_fn(case, method, fixed=True)
    raise ValueError(peer)


def available_peers() -> list[str]:
    found = []
    for peer, module in zip(PEERS, ("torchcam", "captum", "pytorch_grad_cam"), strict=True):
        try:
            __import__(module)
        except Exception:  # torchvision's import error, a missing package
            continue
        found.append(peer)
    return [*found, "xai-fixed"]


# ------------------------------------------------------------------------- timing


def timed(times: dict[str, float], name: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Call ``fn`` once, store its seconds under ``name``, return its result."""
    t0 = time.perf_counter()
    out = fn()
    times[name] = time.perf_counter() - t0
    return out


def plain_forward(case: Case) -> Callable[[], object]:
    def forward() -> object:
        with torch.no_grad():
            return case.model(case.x)

    return forward


# ------------------------------------------------------------------------- memory


def worker(case_name: str, method: str, impl: str) -> None:
    """Print the peak resident memory of one call, in MB above the process before it."""
    case = build_case(case_name)
    if impl == "forward":
        fn = plain_forward(case)
    elif impl == "xai":
        fn = xai_fn(case, method)
    else:
        fn = peer_fn(impl, case, method)
    if is_heavy(case_name, method):  # warm up with a plain forward: a second call costs minutes
        plain_forward(case)()
    else:
        fn()
    print(json.dumps({"peak_mb": peak_mb(fn)}))


def memory(case_name: str, method: str, impl: str) -> float | None:
    return worker_peak_mb(__file__, [case_name, method, impl])


# ------------------------------------------------------------------------- report


def is_heavy(key: str, method: str) -> bool:
    """Score-CAM on a ResNet: N x C masked passes (C = 512 or 2048), minutes per call;
    pytorch-grad-cam's Ablation-CAM on a ResNet runs the whole network C times."""
    return method in ("scorecam", "ablationcam") and key.startswith("resnet")


def heavy_skipped(case: Case, method: str, forward_s: float, everything: bool) -> str | None:
    """Score-CAM on a ResNet needs N x C masked passes (C = 512 or 2048 channels): minutes
    to hours on two cores. Only batch 1 runs by default; the rest get an estimate, C times
    the plain forward pass of the batch."""
    if not is_heavy(case.key, method) or everything or case.key.endswith("-b1"):
        return None
    channels = case.model.fc.in_features
    minutes = channels * forward_s / 60
    return (
        f"not run: {case.x.shape[0]} x {channels} masked passes, about {minutes:.0f} min "
        "per implementation"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="GAPCNN and ResNet-18 batch 1")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    parser.add_argument("--scorecam-all", action="store_true", help="Score-CAM on every ResNet row")
    parser.add_argument("--cases", help="comma-separated, e.g. gapcnn-b1,resnet50-b16")
    parser.add_argument("--methods", help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    peers = available_peers()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"peers: {', '.join(peers) or 'none installed'}; median of up to {args.rounds} "
        f"round-robin rounds; maps agree when max |theirs - ours| <= {TOLERANCE:g}"
    )
    for name in args.cases.split(",") if args.cases else case_names(args.quick):
        run_case(name, peers, args)


def run_case(name: str, peers: list[str], args: argparse.Namespace) -> None:
    case = build_case(name)
    forward = plain_forward(case)
    base = race({"forward": forward}, 10, 5.0)["forward"]
    base_mb = None if args.no_memory else memory(name, "-", "forward")
    print(f"\n### {case.name}\n")
    print("| method | implementation | ms per batch | × forward | × xai | peak MB | agrees |")
    print("|---|---|---:|---:|---:|---:|---|")
    print(
        f"| plain forward | `model(x)`, no grad | {base * 1e3:.1f} | 1.00 | | "
        f"{'-' if base_mb is None else f'{base_mb:.0f}'} | |"
    )
    for method in args.methods.split(",") if args.methods else METHODS:
        skipped = heavy_skipped(case, method, base, args.scorecam_all)
        if skipped:
            print(f"| {method} | all | {skipped} | | | | |")
            continue
        heavy = is_heavy(case.key, method)
        fns: dict[str, Callable[[], object]] = {"forward": forward, "xai": xai_fn(case, method)}
        once: dict[str, float] = {}  # heavy rows: the one timed call is the agreement's call
        ours_maps = timed(once, "xai", fns["xai"])  # type: ignore[arg-type]
        agreement: dict[str, str] = {}
        for peer in [p for p in peers if method in PEER_METHODS[p]]:
            fn = peer_fn(peer, case, method)
            try:
                diff = float((timed(once, peer, fn) - ours_maps).abs().max())
            except Exception as error:  # a peer failing is a finding, not a crash
                agreement[peer] = f"failed: {type(error).__name__}"
                continue
            agreement[peer] = f"{'yes' if diff <= TOLERANCE else 'NO'} ({diff:.1e})"
            fns[peer] = fn
        if heavy:  # minutes per call: one call each, the forward pass timed beside them
            times = {**once, "forward": race({"forward": forward}, 10, 5.0)["forward"]}
        else:
            times = race(fns, args.rounds, 60.0)
        ours = times["xai"]
        note = f"- (× forward: {times['forward'] * 1e3:.1f} ms, timed after)" if heavy else "-"
        for impl in ["xai", *agreement]:
            mb = None if args.no_memory or impl not in times else memory(name, method, impl)
            if impl not in times:
                print(f"| {method} | {impl} | | | | | {agreement[impl]} |")
                continue
            t = times[impl]
            counted = impl == "xai" or agreement[impl].startswith("yes")
            ratio = f"{t / ours:.2f}" if counted else f"({t / ours:.2f})"
            print(
                f"| {method} | {impl} | {t * 1e3:.1f} | {t / times['forward']:.2f} | {ratio} | "
                f"{'-' if mb is None else f'{mb:.0f}'} | {agreement.get(impl, note)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
