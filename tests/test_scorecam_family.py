"""Score-CAM, SS-CAM and IS-CAM against references written here from their equations.

The references loop over samples, channels and variants, each masked input scored alone
by a float64 copy of the model, with the masks, noise and path scales spelt out as the
docstrings define them: H^k = minmax(Up(A^k)) (zero for a constant map), SS-CAM's
v-th noise image drawn once from torch.Generator().manual_seed(seed) and shared by all
samples and channels, IS-CAM's scales c_v = sum_{j<=v} j / V. One test model is built
with constant and duplicated channels on purpose, so that the passes the library skips
are exercised: the maps must not change, and the model must run fewer times.
"""

from __future__ import annotations

import copy
import gc
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xai
from tests.conftest import make_two_stage
from xai.cam import _masked_scores
from xai.core.errors import XAITypeError, XAIValueError

CLASSES = [2, 5, 0]


class Degenerate(nn.Module):
    """``features`` ends in ``act2``, whose 8 maps hold, on purpose, two all-zero
    channels (2, 5), a constant non-zero one (7) and an exact copy of channel 1 (6)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.tail = nn.Sequential(
            nn.Conv2d(8, 5, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(5 * 4 * 4, 7),
        )
        with torch.no_grad():
            for conv in (self.conv1, self.conv2, self.tail[0]):
                conv.weight.mul_(2.0)
                conv.bias.uniform_(0.0, 0.4)
            w, b = self.conv2.weight, self.conv2.bias
            for k, bias in ((2, -1.0), (5, -0.3), (7, 0.5)):
                w[k] = 0.0
                b[k] = bias
            w[6] = w[1]
            b[6] = b[1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.features(x))


GENERIC, CONSTANT, COPIES = [0, 1, 3, 4], [2, 5, 7], [(1, 6)]


def _two_stage():
    return make_two_stage(), "body.3", lambda m, x: m.body(x)


def _degenerate():
    return Degenerate().eval(), "act2", lambda m, x: m.features(x)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(3, 3, 8, 8)


def test_the_degenerate_model_is_degenerate(images):
    model, _, features = _degenerate()
    with torch.no_grad():
        A = features(model, images)
    for k in CONSTANT:
        assert (A[:, k] == A[:, k, :1, :1]).all()
    assert (A[:, [2, 5]] == 0).all() and (A[:, 7] == 0.5).all()
    for a, b in COPIES:
        assert torch.equal(A[:, a], A[:, b])  # bit-identical
    flat = A[:, GENERIC].flatten(2)
    assert (flat.amax(2) > flat.amin(2)).all()  # the others vary ...
    for n in range(len(A)):
        assert len(torch.unique(flat[n], dim=0)) == len(GENERIC)  # ... and differ


# --------------------------------------------------------------------------- reference


def _mask(a: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """H = minmax(Up(a)) in float64; a constant map has the zero mask."""
    if a.max() == a.min():
        return torch.zeros(size, dtype=torch.float64)
    up = F.interpolate(a[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return (up - up.min()) / (up.max() - up.min())


def _reference(case, x, method, *, softmax, baseline, channel_softmax, V=1, std=0.0, seed=0):
    model, _, features = case
    m = copy.deepcopy(model).double().eval()
    xd = x.double()
    size = tuple(x.shape[2:])
    noise = std * torch.randn((V, *size), generator=torch.Generator().manual_seed(seed))
    noise = noise.double()
    with torch.no_grad():
        A = features(m, xd)
        expected = torch.zeros(A.shape[0], *A.shape[2:], dtype=torch.float64)
        for n in range(A.shape[0]):

            def f(image, n=n):
                out = m(image[None])[0]
                return float(torch.softmax(out, 0)[CLASSES[n]] if softmax else out[CLASSES[n]])

            base = f(torch.full_like(xd[n], baseline)) if baseline is not None else 0.0
            alphas = []
            for k in range(A.shape[1]):
                H = _mask(A[n, k], size)
                if method == "scorecam":
                    inputs = [xd[n] * H]
                elif method == "sscam":
                    inputs = [xd[n] * (H + noise[v]) for v in range(V)]
                else:  # iscam: c_v = sum_{j=1..v} j / V
                    scales = [sum(j / V for j in range(1, v + 1)) for v in range(1, V + 1)]
                    inputs = [c * (xd[n] * H) for c in scales]
                alphas.append(sum(f(image) for image in inputs) / len(inputs) - base)
            weights = torch.tensor(alphas, dtype=torch.float64)
            if channel_softmax:
                weights = torch.softmax(weights, 0)
            for k in range(A.shape[1]):
                expected[n] += weights[k] * A[n, k]
    return expected.clamp_min(0)


def _explain(case, x, method, **options):
    model, layer, _ = case
    return xai.explain(model, x, method=method, layer=layer, target=CLASSES, **options)


def _assert_maps(got, expected, tol=1e-5):
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(got.double(), expected, atol=tol * scale, rtol=tol)


OPTION_SETS = {
    "peers": {"softmax": False, "baseline": None, "channel_softmax": True},
    "paper": {"softmax": True, "baseline": 0.0, "channel_softmax": False},
    "shifted": {"softmax": False, "baseline": 0.5, "channel_softmax": False},
}
VARIANTS = {
    "scorecam": {},
    "sscam": {"num_samples": 4, "std": 0.5, "seed": 3},
    "iscam": {"num_samples": 4},
}


def _reference_options(method, options):
    extra = VARIANTS[method]
    return {"V": extra.get("num_samples", 1), "std": extra.get("std", 0.0),
            "seed": extra.get("seed", 0), **options}  # fmt: skip


@pytest.mark.parametrize("build", [_two_stage, _degenerate], ids=["two_stage", "degenerate"])
@pytest.mark.parametrize("options", list(OPTION_SETS), ids=list(OPTION_SETS))
@pytest.mark.parametrize("method", list(VARIANTS))
def test_matches_the_equations(method, options, build, images):
    case = build()
    chosen = OPTION_SETS[options]
    expected = _reference(case, images, method, **_reference_options(method, chosen))
    got = _explain(case, images, method, **VARIANTS[method], **chosen)
    _assert_maps(got.raw, expected)
    assert float(expected.abs().max()) > 1e-3  # not a trivially empty map


def test_the_defaults_are_torchcams_semantics(images):
    """SS-CAM and IS-CAM default to logits, no baseline pass and the channel softmax;
    35 samples with std 2 (SS-CAM) and 10 (IS-CAM), as torchcam."""
    case = _degenerate()
    peers = OPTION_SETS["peers"]
    ss = _explain(case, images, "sscam", num_samples=3)
    expected = _reference(case, images, "sscam", V=3, std=2.0, seed=0, **peers)
    _assert_maps(ss.raw, expected)
    explainer = xai.SSCAM(case[0])
    assert (explainer.num_samples, explainer.std, explainer.seed) == (35, 2.0, 0)
    assert xai.ISCAM(case[0]).num_samples == 10
    for e in (explainer, xai.ISCAM(case[0])):
        assert (e.softmax, e.baseline, e.channel_softmax, e.batch_size) == (
            False, None, True, None)  # fmt: skip
    score = xai.ScoreCAM(case[0])
    assert (score.softmax, score.baseline, score.channel_softmax, score.batch_size) == (
        True, 0.0, False, None)  # fmt: skip


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("options", list(OPTION_SETS), ids=list(OPTION_SETS))
def test_sscam_with_no_noise_is_scorecam(options, images):
    case = _degenerate()
    chosen = OPTION_SETS[options]
    score = _explain(case, images, "scorecam", **chosen).raw
    smooth = _explain(case, images, "sscam", std=0.0, num_samples=3, **chosen).raw
    torch.testing.assert_close(smooth, score, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("options", list(OPTION_SETS), ids=list(OPTION_SETS))
def test_iscam_with_one_sample_is_scorecam(options, images):
    """With V = 1 the only scale is c_1 = 1/1 = 1: the masked image itself."""
    case = _degenerate()
    chosen = OPTION_SETS[options]
    score = _explain(case, images, "scorecam", **chosen).raw
    integrated = _explain(case, images, "iscam", num_samples=1, **chosen).raw
    torch.testing.assert_close(integrated, score, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(_explain(case, images, "iscam", num_samples=3, **chosen).raw, score)


def test_sscam_seed(images):
    case = _two_stage()
    first = _explain(case, images, "sscam", num_samples=3, seed=5).raw
    again = _explain(case, images, "sscam", num_samples=3, seed=5).raw
    other = _explain(case, images, "sscam", num_samples=3, seed=6).raw
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3 * first.abs().max()


# --------------------------------------------------------------------- chunks and skips


@pytest.mark.parametrize(
    ("method", "sizes"),
    [("scorecam", (1, 7, None)), ("sscam", (1, 5, None)), ("iscam", (1, 5, None))],
)
@pytest.mark.parametrize("options", ["peers", "paper"])
def test_independent_of_the_chunk_size(method, sizes, options, images):
    case = _degenerate()
    extra = {**VARIANTS[method], **OPTION_SETS[options]}
    results = [_explain(case, images, method, batch_size=b, **extra).raw for b in sizes]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-6, atol=1e-6)


def _count_rows(model, run):
    """Rows of every forward pass of ``model`` during ``run()``, and the number of passes."""
    rows = []
    handle = model.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        run()
    finally:
        handle.remove()
    return sum(rows), len(rows)


@pytest.mark.parametrize(
    ("method", "options", "per_sample"),
    [
        # 4 distinct varying maps; the 3 constant ones share the baseline's zero image
        ("scorecam", {"baseline": 0.0}, 4),
        ("scorecam", {"baseline": None}, 4 + 1),  # ... or one pass of their own
        ("sscam", {"num_samples": 3}, (4 + 1) * 3),  # X * noise_v, shared
        ("iscam", {"num_samples": 3}, 4 * 3 + 1),  # every scale of 0 is the zero image
        ("iscam", {"num_samples": 3, "baseline": 0.0}, 4 * 3),
    ],
)
def test_constant_and_duplicate_channels_cost_no_extra_pass(method, options, per_sample, images):
    model, layer, _ = _degenerate()
    n, channels = len(images), 8
    explainer = xai.explainer(model, method, layer=layer, batch_size=1, **options)
    rows, passes = _count_rows(model, lambda: explainer(images, CLASSES))
    plain = 1 + (options.get("baseline") is not None)  # the input's pass, the baseline's
    assert rows == n * (plain + per_sample)
    assert passes == n * per_sample + plain  # batch_size=1: one pass per masked input
    unskipped = channels * options.get("num_samples", 1)
    assert per_sample < unskipped


class _Wide(nn.Module):
    """One conv of many channels: enough masked inputs for the chunk-size trial."""

    def __init__(self, channels: int = 320) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fc = nn.Linear(channels, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def test_batch_size_none_times_candidates_then_remembers_per_model():
    model = _Wide().eval()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    options = {"layer": "conv", "target": 1, "softmax": False, "baseline": None}
    assert _masked_scores.chosen_chunk(model, x) is None
    auto = xai.explain(model, x, "scorecam", batch_size=None, **options)
    chosen = _masked_scores.chosen_chunk(model, x)
    assert chosen in _masked_scores.CANDIDATES
    plan = _masked_scores.chosen_plan(model, x)
    assert plan is not None and plan[0] == chosen and isinstance(plan[1], bool)  # the layout
    assert _masked_scores.chosen_chunk(model, x[:, :, :3]) is None  # per input shape
    assert _masked_scores.chosen_chunk(model, x.double()) is None  # per dtype
    # The next call uses the remembered size: every masked chunk but the last has it.
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        again = xai.explain(model, x, "scorecam", batch_size=None, **options)
    finally:
        handle.remove()
    assert rows[0] == len(x) and sum(rows[1:]) == 4 * 320
    assert all(r == chosen for r in rows[1:-1])
    fixed = xai.explain(model, x, "scorecam", batch_size=64, **options)
    torch.testing.assert_close(auto.raw, fixed.raw, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(again.raw, fixed.raw, rtol=1e-6, atol=1e-6)
    # Weakly keyed: the model's entry goes with the model.
    entries = len(_masked_scores._chosen)
    del model, handle
    gc.collect()
    assert len(_masked_scores._chosen) == entries - 1


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("method", "option", "bad", "error", "message"),
    [
        ("sscam", "num_samples", 0, XAIValueError, "num_samples must be a positive int"),
        ("iscam", "num_samples", 2.0, XAITypeError, "num_samples must be a positive int"),
        ("sscam", "std", -0.1, XAIValueError, r"std must be a finite number >= 0"),
        ("sscam", "seed", -1, XAIValueError, "seed must be an int between 0"),
        ("iscam", "batch_size", 0, XAIValueError, "batch_size must be a positive int or None"),
    ],
)
def test_bad_options_are_refused(method, option, bad, error, message):
    with pytest.raises(error, match=message):
        xai.explainer(Degenerate(), method, **{option: bad})


def test_iscam_has_no_seed_and_sscam_has_one():
    with pytest.raises(TypeError, match="unknown option"):
        xai.explainer(Degenerate(), "iscam", seed=1)
    assert xai.explainer(Degenerate(), "sscam", seed=1).seed == 1


class _Viewing(_Wide):
    """Calls ``view`` on its input, which a channels-last tensor refuses."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.view(len(x), -1)
        return super().forward(x)


def test_a_model_refusing_channels_last_inputs_is_timed_on_contiguous_ones_only():
    model = _Viewing().eval()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    options = {"layer": "conv", "target": 2, "softmax": False, "baseline": None}
    auto = xai.explain(model, x, "scorecam", batch_size=None, **options)
    assert _masked_scores.chosen_plan(model, x) == (_masked_scores.chosen_chunk(model, x), False)
    fixed = xai.explain(model, x, "scorecam", batch_size=64, **options)
    torch.testing.assert_close(auto.raw, fixed.raw, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("cost", "tried", "chosen"),
    [
        # a CPU: per-input cost falls, then rises; sizes past the rise are never run
        ({4: 2e-4, 8: 1e-4, 16: 8e-4, 32: 1e-5, 64: 1e-5}, [4, 8, 16], 8),
        # a GPU: it keeps falling, every size is tried
        ({4: 8e-4, 8: 4e-4, 16: 2e-4, 32: 1e-4, 64: 5e-5}, [4, 8, 16, 32, 64], 64),
    ],
)
def test_chunk_search_stops_past_the_best_size(cost, tried, chosen):
    # A step that sleeps its cost per input: the search's choices depend only on the
    # ratios (4x and more), not on the machine's speed.
    sizes: list[int] = []

    def step(size: int, channels_last: bool) -> None:
        sizes.append(size)
        time.sleep(cost[size] * size)

    plan, finished = _masked_scores._explore(step, 100_000, 1, (False,))
    assert plan == (chosen, False) and finished
    assert sorted(set(sizes)) == tried
