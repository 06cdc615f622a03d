"""The methods added for parity with the peers, side by side with the peers that have them.

Each row: time per batch, its ratio to a plain no-grad forward pass of the same batch
(the method's cost "in forward passes"), and how far the peer's final maps are from ours
(``max |theirs - ours|`` over maps resized to the input and min-max normalised, as a
user shows them). Where a convention differs on purpose (Eigen-Grad-CAM's sign, FullGrad's
normalisation, SS-CAM's noise) the row says so and the agreement column shows the size
of the difference, with our option that reproduces the peer's convention where there is
one.

Cases: a ResNet-18 (torchvision's layout, ``benchmarks/resnets.py``) at 3x224x224,
batch 1, ``layer4`` (``layer3,layer4`` for fusion), for the gradient methods, FullGrad and
the smoothing options; the shipped Fashion-MNIST GAPCNN at 1x28x28, batch 4, for SS-CAM and
IS-CAM (their N x C x samples masked passes make a ResNet row minutes long).

    python benchmarks/bench_new_methods.py [--quick] [--rounds 3]

pytorch-grad-cam needs torchvision: run it in the benchmark environment
(benchmarks/README.md) to include it; torchcam runs in both.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import resnets
from _timing import race

import xai
from xai.core.maps import minmax, upsample

Maps = Callable[[], torch.Tensor]


def finish(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return minmax(upsample(raw.detach().float(), size))


def has(module: str) -> bool:
    try:
        __import__(module)
    except Exception:  # torchvision's import error, a missing package
        return False
    return True


# ------------------------------------------------------------------------------ cases


def resnet_case(quick: bool) -> tuple[torch.nn.Module, torch.Tensor, list[int]]:
    torch.manual_seed(0)
    model = resnets.resnet18().eval()
    side = 112 if quick else 224
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        targets = model(x).argmax(dim=1).tolist()
    return model, x, targets


def gapcnn_case() -> tuple[torch.nn.Module, torch.Tensor, list[int]]:
    model = xai.models.pretrained("fashion-mnist")
    images, _ = xai.models.sample_batch()
    x = images[:4].contiguous()
    with torch.no_grad():
        targets = model(x).argmax(dim=1).tolist()
    return model, x, targets


# ------------------------------------------------------------------- implementations


def ours(model, x, targets, method: str, layer, **options) -> Maps:
    explainer = xai.explainer(model, method, layer, **options)
    return lambda: explainer(x, targets).maps


def pgc(model, x, targets, name: str, layers: list[str], **call) -> Maps:
    import pytorch_grad_cam as p
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(p, name)
    modules = dict(model.named_modules())
    wanted = [ClassifierOutputTarget(t) for t in targets]

    def run() -> torch.Tensor:
        with cls(model=model, target_layers=[modules[n] for n in layers]) as cam:
            return minmax(torch.from_numpy(cam(input_tensor=x, targets=wanted, **call)))

    return run


def torchcam(model, x, targets, name: str, layers: list[str], **options) -> Maps:
    import torchcam.methods as tc

    cls = getattr(tc, name)
    size = (x.shape[2], x.shape[3])

    def run() -> torch.Tensor:
        layer = layers if len(layers) > 1 else layers[0]
        with cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **options) as ex:
            cams = ex(targets, model(x), normalized=True)
        cam = ex.fuse_cams(cams) if len(cams) > 1 else cams[0]
        return finish(cam, size)

    return run


def rows(quick: bool) -> list[tuple[str, str, Maps, dict[str, Maps], str]]:
    """(case, method, ours, {peer: its call}, note) for every row."""
    model, x, targets = resnet_case(quick)
    out = []
    with_pgc = has("pytorch_grad_cam")
    with_tc = has("torchcam")

    def peers(**calls: Callable[[], Maps]) -> dict[str, Maps]:
        wanted = {"pytorch-grad-cam": with_pgc, "torchcam": with_tc}
        return {k.replace("_", "-"): f() for k, f in calls.items() if wanted[k.replace("_", "-")]}

    r18 = "resnet18"
    out.append(
        (r18, "gradcam-elementwise", ours(model, x, targets, "gradcam-elementwise", "layer4"),
         peers(pytorch_grad_cam=lambda: pgc(model, x, targets, "GradCAMElementWise", ["layer4"])),
         "")
    )  # fmt: skip
    out.append(
        (r18, "eigengradcam (center=True)",
         ours(model, x, targets, "eigengradcam", "layer4", center=True),
         peers(pytorch_grad_cam=lambda: pgc(model, x, targets, "EigenGradCAM", ["layer4"])),
         "pytorch-grad-cam keeps LAPACK's sign")
    )  # fmt: skip
    out.append(
        (r18, "eigencam (center=True, relu=True)",
         ours(model, x, targets, "eigencam", "layer4", center=True, relu=True),
         peers(pytorch_grad_cam=lambda: pgc(model, x, targets, "EigenCAM", ["layer4"])),
         "pytorch-grad-cam keeps LAPACK's sign")
    )  # fmt: skip
    out.append(
        (r18, "fullgrad", ours(model, x, targets, "fullgrad", None),
         peers(pytorch_grad_cam=lambda: pgc(model, x, targets, "FullGrad", ["layer4"])),
         "normalisation per layer (authors) vs per channel (pytorch-grad-cam)")
    )  # fmt: skip
    out.append(
        (r18, "gradcam eigen_smooth",
         ours(model, x, targets, "gradcam", "layer4", eigen_smooth=True),
         peers(pytorch_grad_cam=lambda: pgc(model, x, targets, "GradCAM", ["layer4"],
                                            eigen_smooth=True)),
         "pytorch-grad-cam centres and keeps LAPACK's sign")
    )  # fmt: skip
    out.append(
        (r18, "gradcam aug_smooth",
         ours(model, x, targets, "gradcam", "layer4", aug_smooth=True),
         peers(pytorch_grad_cam=lambda: pgc(model, x, targets, "GradCAM", ["layer4"],
                                            aug_smooth=True)),
         "pytorch-grad-cam resizes each copy's map before the mean")
    )  # fmt: skip
    out.append(
        (r18, "gradcam layer3+layer4 mean",
         ours(model, x, targets, "gradcam", ["layer3", "layer4"]),
         peers(pytorch_grad_cam=lambda: pgc(model, x, targets, "GradCAM", ["layer3", "layer4"])),
         "pytorch-grad-cam resizes each layer's map to the input, xai to the finest layer")
    )  # fmt: skip
    out.append(
        (r18, "gradcam layer3+layer4 max",
         ours(model, x, targets, "gradcam", ["layer3", "layer4"], fuse="max"),
         peers(torchcam=lambda: torchcam(model, x, targets, "GradCAM", ["layer3", "layer4"])),
         "")
    )  # fmt: skip
    small, xs, ts = gapcnn_case()
    layer = xai.GradCAM(small).layer_for(xs).name
    samples = 4 if quick else 35
    out.append(
        ("gapcnn", f"sscam ({samples} samples)",
         ours(small, xs, ts, "sscam", layer, num_samples=samples),
         peers(torchcam=lambda: torchcam(small, xs, ts, "SSCAM", [layer], num_samples=samples)),
         "random noise: agreement within the sampling error only")
    )  # fmt: skip
    steps = 4 if quick else 10
    out.append(
        ("gapcnn", f"iscam ({steps} steps)",
         ours(small, xs, ts, "iscam", layer, num_samples=steps),
         peers(torchcam=lambda: torchcam(small, xs, ts, "ISCAM", [layer], num_samples=steps)),
         "torchcam normalises before upsampling")
    )  # fmt: skip
    out.append(("gapcnn", "scorecam (reference row)", ours(small, xs, ts, "scorecam", layer), {},
                ""))  # fmt: skip
    forward = {"resnet18": (model, x), "gapcnn": (small, xs)}
    return [(case, *rest, forward[case]) for case, *rest in out]  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="112x112, fewer samples, 1 round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"pytorch-grad-cam: {'yes' if has('pytorch_grad_cam') else 'not installed'}, "
        f"torchcam: {'yes' if has('torchcam') else 'not installed'}; median of {rounds} rounds"
    )
    print("\n| case | method | implementation | ms per batch | × forward | max abs diff | note |")
    print("|---|---|---|---:|---:|---:|---|")
    for case, method, mine, theirs, note, (model, x) in rows(args.quick):

        def forward(model=model, x=x) -> object:
            with torch.no_grad():
                return model(x)

        reference = mine()
        fns = {"forward": forward, "xai": mine, **theirs}
        diffs = {}
        for peer, fn in theirs.items():
            try:
                diffs[peer] = f"{float((fn() - reference).abs().max()):.1e}"
            except Exception as error:  # a peer failing is a finding, not a crash
                diffs[peer] = f"failed: {type(error).__name__}: {error}"[:80]
                fns.pop(peer)
        # pytorch-grad-cam's numpy SVD leaves OpenBLAS threads spinning (see race); the
        # GAPCNN rows have no numpy peer and calls of 1 ms, which a pause would slow
        times = race(fns, rounds, 120.0, pause=0.2 if case == "resnet18" else 0.0)
        for impl in ["xai", *theirs]:
            t = times.get(impl)
            shown = "-" if t is None else f"{t * 1e3:.1f} | {t / times['forward']:.1f}"
            shown = shown if t is not None else "- | -"
            print(
                f"| {case} | {method} | {impl} | {shown} | {diffs.get(impl, '')} | "
                f"{note if impl != 'xai' else ''} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
