"""Speed of every CAM method, against a plain forward pass and against the peers.

For two GAP-headed CNNs (a Fashion-MNIST-sized one and a larger RGB one) it times each of
xai's methods, the same batch explained by captum and torchcam where they implement the
method, and a plain ``model(x)`` under ``torch.no_grad()``. It also reports how far each
peer's raw map is from ours (max |difference| / max |ours|), on the same inputs, layer
and targets, so that a speed-up is never bought with a different answer.

    python benchmarks/bench_cam.py [--repeats 7] [--quick]

Peers are optional: ``pip install -e ".[bench]"`` adds torchcam; captum is a core
dependency. pytorch-grad-cam needs torchvision, which does not import beside the CPU
build of torch used here; see the README's benchmarks section.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import xai


@dataclass
class Case:
    name: str
    model: nn.Module
    x: torch.Tensor
    layer: str


def cases(quick: bool) -> list[Case]:
    torch.manual_seed(0)
    small = xai.models.GAPCNN().eval()
    large = xai.models.GAPCNN(
        in_channels=3, num_classes=100, channels=(32, 64, 128, 256), convs_per_block=2
    ).eval()
    return [
        Case("GAPCNN 1x28x28, batch 64", small, torch.rand(64, 1, 28, 28), "features.19"),
        Case(
            "GAPCNN-L 3x128x128, batch 8" if not quick else "GAPCNN-L 3x64x64, batch 4",
            large,
            torch.rand(8, 3, 128, 128) if not quick else torch.rand(4, 3, 64, 64),
            "features.26",
        ),
    ]


def timed(fn: Callable[[], object], repeats: int, budget: float = 10.0) -> float:
    """Median wall time; slow calls (Score-CAM) are repeated fewer times, at least once."""
    start = time.perf_counter()
    fn()  # warm-up (and the default-layer trace)
    first = time.perf_counter() - start
    samples = []
    for _ in range(max(1, min(repeats, int(budget / max(first, 1e-9))))):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


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
            ("cam", tc.CAM, {"fc_layer": "head"}),  # signed: compared with ReLU applied
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
    parser.add_argument("--quick", action="store_true", help="smaller inputs, 2 repeats")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeats}")
    for case in cases(args.quick):
        n = case.x.shape[0]
        targets = [i % 10 for i in range(n)]
        with torch.no_grad():
            forward = timed(lambda c=case: c.model(c.x), repeats)
        print(f"\n## {case.name}: plain forward {forward * 1e3:.2f} ms\n")
        print("| method | xai ms | xai / forward | peer | peer ms | peer / xai | peer's diff |")
        print("|---|---:|---:|---|---:|---:|---:|")
        available = peers(case, targets)
        for method in xai.methods():
            layer = None if method == "guided-backprop" else case.layer
            explainer = xai.explainer(case.model, method, layer)
            result = explainer(case.x, targets)
            ours = result.attributions if result.attributions is not None else result.raw
            t = timed(lambda e=explainer, c=case, y=targets: e(c.x, y), repeats)
            row = f"| {method} | {t * 1e3:.2f} | {t / forward:.1f} |"
            entries = available.get(method, [])
            if not entries:
                print(f"{row} - | - | - | - |")
            for peer, fn in entries:
                try:
                    theirs = fn()
                    tp = timed(fn, repeats)
                    print(
                        f"{row} {peer} | {tp * 1e3:.2f} | {tp / t:.2f} | "
                        f"{difference(ours, theirs):.1e} |"
                    )
                except Exception as error:  # a peer failing is a finding, not a crash
                    print(f"{row} {peer} | failed: {type(error).__name__}: {error} | | |")
                row = "| | | |"
    print(FOOTNOTES)


if __name__ == "__main__":
    main()
