"""Speed of every CAM method, against a plain forward pass and against the peers.

For two GAP-headed CNNs (a Fashion-MNIST-sized one and a larger RGB one) and a ResNet-18
(torchvision's layout, batch 8 at 224 x 224, the issue's own set-up) it times each of xai's
methods, the same batch explained by captum and torchcam where they implement the
method, and a plain ``model(x)`` under ``torch.no_grad()``, in turn within one loop (so
that a busy machine slows all of them alike) and reports medians and ratios. It also
reports how far each peer's raw map is from ours (max |difference| / max |ours|), on the
same inputs, layer and targets, so that a speed-up is never bought with a different answer.

    python benchmarks/bench_cam.py [--repeats 7] [--quick]

Peers are optional: ``pip install -e ".[bench]"`` adds torchcam; captum is a core
dependency. pytorch-grad-cam needs torchvision, which does not import beside the CPU
build of torch used here; bench_peers.py adds it, in the benchmark environment of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import resnets
from _timing import race

import xai


@dataclass
class Case:
    name: str
    model: nn.Module
    x: torch.Tensor
    layer: str
    head: str = "head"  # the linear layer CAM weights by (torchcam's fc_layer)
    skip: tuple[str, ...] = ()  # methods too slow to race here (bench_peers.py has them)


def cases(quick: bool) -> list[Case]:
    torch.manual_seed(0)
    small = xai.models.GAPCNN().eval()
    large = xai.models.GAPCNN(
        in_channels=3, num_classes=100, channels=(32, 64, 128, 256), convs_per_block=2
    ).eval()
    return [
        Case("GAPCNN 1x28x28, batch 64", small, torch.rand(64, 1, 28, 28), "features.19"),
        Case(
            "GAPCNN-L 3x96x96, batch 4" if not quick else "GAPCNN-L 3x48x48, batch 2",
            large,
            torch.rand(4, 3, 96, 96) if not quick else torch.rand(2, 3, 48, 48),
            "features.26",
            skip=("sscam", "iscam"),  # 4 x 256 x 35 (10) masked passes: bench_new_methods.py
        ),
        Case(
            "ResNet-18 3x224x224, batch 8" if not quick else "ResNet-18 3x64x64, batch 2",
            resnets.resnet18(),
            torch.rand(8, 3, 224, 224) if not quick else torch.rand(2, 3, 64, 64),
            "layer4",
            head="fc",
            skip=("scorecam", "sscam", "iscam"),  # 8 x 512 (x 35) masked passes: bench_peers.py
        ),
    ]


def peers(case: Case, targets: list[int]) -> dict[str, list[tuple[str, Callable]]]:
    """method -> [(peer name, fn returning the raw map (N, h, w) or attributions)]."""
    module = dict(case.model.named_modules())[case.layer]
    out: dict[str, list[tuple[str, Callable]]] = {}
    try:
        from captum import attr

        def captum_gradcam():
            a = attr.LayerGradCam(case.model, module).attribute(
                case.x, target=targets, relu_attributions=True
            )
            return a[:, 0].detach()

        def captum_guided_gradcam():
            return (
                attr.GuidedGradCam(case.model, module)
                .attribute(case.x, target=targets, interpolate_mode="bilinear")
                .detach()
            )

        def captum_guided_backprop():
            return attr.GuidedBackprop(case.model).attribute(case.x, target=targets).detach()

        out.setdefault("gradcam", []).append(("captum", captum_gradcam))
        out.setdefault("guided-gradcam", []).append(("captum", captum_guided_gradcam))
        out.setdefault("guided-backprop", []).append(("captum", captum_guided_backprop))
    except ImportError:
        pass
    try:
        import torchcam.methods as tc

        def torchcam_fn(cls, **kw):
            def run():
                with cls(
                    case.model, target_layer=case.layer, input_shape=tuple(case.x.shape[1:]), **kw
                ) as extractor:
                    scores = case.model(case.x)
                    maps = extractor(targets, scores, normalized=False)
                return maps[0].detach().clamp_min(0) if cls is tc.CAM else maps[0].detach()

            return run

        for method, cls, kw in [
            ("cam", tc.CAM, {"fc_layer": case.head}),  # signed: compared with ReLU applied
            ("gradcam", tc.GradCAM, {}),
            ("gradcam++", tc.GradCAMpp, {}),
            ("xgradcam", tc.XGradCAM, {}),
            ("layercam", tc.LayerCAM, {}),
            ("scorecam", tc.ScoreCAM, {"batch_size": 64}),
        ]:
            out.setdefault(method, []).append(("torchcam", torchcam_fn(cls, **kw)))
    except ImportError:
        pass
    return out


def difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    theirs = theirs.reshape(ours.shape).float()
    return float((ours - theirs).abs().max() / ours.abs().max().clamp_min(1e-12))


FOOTNOTES = """
Notes on the peers' differences (max |theirs - ours| / max |ours| of the raw maps):
- torchcam Grad-CAM++ divides a boolean-masked copy in place (alpha[idx][mask].div_), so its
  alpha denominator is never applied; ours follows the paper (tests/test_oracles.py).
- torchcam Score-CAM weights channels by a softmax over channels of logit differences
  (the paper's Algorithm 1); ours uses the paper's increase of confidence with softmax
  probabilities (Eq. 3), and normalises after upsampling, not before.
- torchcam's CAM map is signed; it is compared here after a ReLU, as ours.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, 3 rounds")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; each row times xai, "
        f"the peers and a plain forward round-robin, median of up to {repeats} rounds"
    )
    for case in cases(args.quick):
        n = case.x.shape[0]
        targets = [i % 10 for i in range(n)]

        def forward(c: Case = case) -> object:
            with torch.no_grad():
                return c.model(c.x)

        base = race({"forward": forward}, 30, 3.0)["forward"]
        print(f"\n## {case.name}: plain forward {base * 1e3:.2f} ms\n")
        print("| method | xai ms | xai / forward | peer | peer ms | peer / xai | peer's diff |")
        print("|---|---:|---:|---|---:|---:|---:|")
        available = peers(case, targets)
        for method in xai.methods():
            if method in case.skip:
                where = "bench_peers.py" if method == "scorecam" else "bench_new_methods.py"
                print(f"| {method} | see {where} | | | | | |")
                continue
            layer = None if method in ("guided-backprop", "fullgrad") else case.layer
            explainer = xai.explainer(case.model, method, layer)
            result = explainer(case.x, targets)
            ours = result.attributions if result.attributions is not None else result.raw
            fns: dict[str, Callable[[], object]] = {
                "forward": forward,
                "xai": lambda e=explainer, c=case, y=targets: e(c.x, y),
            }
            diffs: dict[str, str] = {}
            for peer, fn in available.get(method, []):
                try:
                    diffs[peer] = f"{difference(ours, fn()):.1e}"
                    fns[peer] = fn
                except Exception as error:  # a peer failing is a finding, not a crash
                    diffs[peer] = f"failed: {type(error).__name__}: {error}"
            times = race(fns, repeats, budget=20.0)
            t = times["xai"]
            row = f"| {method} | {t * 1e3:.2f} | {t / times['forward']:.2f} |"
            if not diffs:
                print(f"{row} - | - | - | - |")
            for peer, diff in diffs.items():
                if peer in times:
                    tp = times[peer]
                    print(f"{row} {peer} | {tp * 1e3:.2f} | {tp / t:.2f} | {diff} |")
                else:
                    print(f"{row} {peer} | {diff} | | |")
                row = "| | | |"
    print(FOOTNOTES)


if __name__ == "__main__":
    main()
