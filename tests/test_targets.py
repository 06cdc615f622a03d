"""Targets as objects: segmentation masks, detection boxes, embedding similarity, custom
scores; each sample's own data, also when rows of several samples share a chunk."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xai
from tests._reference import hooked_gradcam
from tests.conftest import make_gapcnn
from xai.targets import Box, Class, Segmentation, Similarity, Target
from xai.targets.box import box_iou


def gradcam_reference(model, layer: nn.Module, x: torch.Tensor, score_fn) -> torch.Tensor:
    """Grad-CAM from the equations with a plain hook: score_fn(output) -> (N,) scores."""
    return hooked_gradcam(model, layer, x, score_fn)


# ---------------------------------------------------------------------- segmentation


class Segmenter(nn.Module):
    """Per-pixel class scores at input resolution, returned as torchvision does."""

    def __init__(self, classes: int = 4, key: str | None = "out") -> None:
        super().__init__()
        self.key = key
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.classifier = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        out = self.classifier(self.body(x))
        return out if self.key is None else {self.key: out, "aux": out.mean()}


def make_segmenter(**kwargs) -> Segmenter:
    torch.manual_seed(0)
    return Segmenter(**kwargs).eval()


@pytest.fixture
def seg_batch():
    torch.manual_seed(4)
    x = torch.rand(3, 1, 12, 12)
    masks = torch.rand(3, 12, 12) > 0.6  # one mask per sample
    categories = [1, 3, 0]
    return x, masks, categories


def test_segmentation_gradcam_with_per_sample_masks_equals_the_reference(seg_batch):
    x, masks, categories = seg_batch
    model = make_segmenter()
    e = xai.explain(model, x, layer="body.2", target=Segmentation(categories, masks))

    def score(out):
        logits = out["out"]
        rows = logits[torch.arange(3), torch.tensor(categories)]  # (3, 12, 12)
        return (rows * masks.float()).flatten(1).sum(1)

    expected = gradcam_reference(model, model.body[2], x, score)
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)
    assert e.targets.tolist() == categories
    assert e.explained[0] == f"segmentation: class 1 over mask sum {int(masks[0].sum())}"
    # one target per sample in a list gives the same maps
    listed = [Segmentation(c, m) for c, m in zip(categories, masks, strict=True)]
    torch.testing.assert_close(xai.explain(model, x, layer="body.2", target=listed).raw, e.raw)


@pytest.mark.parametrize(
    ("method", "options"),
    [("scorecam", {"batch_size": 5}), ("ablationcam", {"batch_size": 3}), ("gradcam++", {})],
)
def test_a_batch_with_per_sample_masks_equals_each_image_alone(method, options, seg_batch):
    """Score-CAM scores 3 x 8 masked copies in chunks of 5: rows of different samples
    share a chunk, and each row must be scored with its own sample's mask."""
    x, masks, categories = seg_batch
    model = make_segmenter()
    target = Segmentation(categories, masks)
    batch = xai.explain(model, x, method=method, layer="body.2", target=target, **options)
    for i in range(3):
        alone = xai.explain(
            model, x[i : i + 1], method=method, layer="body.2",
            target=Segmentation(categories[i], masks[i]), **options,
        )  # fmt: skip
        torch.testing.assert_close(batch.raw[i], alone.raw[0], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(batch.scores[i], alone.scores[0], rtol=1e-5, atol=1e-6)


def test_segmentation_reads_logits_attributes_and_plain_tensors(seg_batch):
    x, masks, categories = seg_batch

    class HFStyle(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_segmenter(key=None)

        def forward(self, x):
            return type("SemanticSegmenterOutput", (), {"logits": self.net(x)})()

    target = Segmentation(categories, masks)
    plain = xai.explain(make_segmenter(key=None), x, layer="body.2", target=target)
    wrapped = xai.explain(HFStyle().eval(), x, layer="net.body.2", target=target)
    torch.testing.assert_close(plain.raw, wrapped.raw)


def test_segmentation_errors_name_the_fix(seg_batch):
    x, masks, _ = seg_batch
    model = make_segmenter()
    with pytest.raises(xai.XAIValueError, match=r"mask is \(6, 6\).*output is \(12, 12\).*nearest"):
        xai.explain(model, x, layer="body.2", target=Segmentation(1, torch.ones(6, 6)))
    with pytest.raises(xai.XAIValueError, match=r"category 4 is out of range.*4 classes"):
        xai.explain(model, x, layer="body.2", target=Segmentation(4, masks))
    with pytest.raises(xai.XAIValueError, match="mask has 2 entries but the inputs hold 3"):
        xai.explain(model, x, layer="body.2", target=Segmentation(1, masks[:2]))
    with pytest.raises(xai.XAIValueError, match=r"Segmentation needs .* \(N, classes, h, w\)"):
        xai.explain(make_gapcnn(), torch.rand(1, 1, 16, 16), target=Segmentation(1, masks[0]))


# ------------------------------------------------------------------------ detection


class DenseDetector(nn.Module):
    """Every cell of a stride-4 grid predicts a box around its centre and class scores."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=4, padding=1)
        )
        self.cls = nn.Conv2d(8, classes, 1)
        self.reg = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        f = torch.relu(self.body(x))
        _, _, h, w = f.shape
        scores = self.cls(f).sigmoid().flatten(2).transpose(1, 2)  # (N, h*w, K)
        reg = self.reg(f)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cx = (xs + 0.5) * 4 + reg[:, 0]
        cy = (ys + 0.5) * 4 + reg[:, 1]
        sw, sh = 6 * reg[:, 2].exp(), 6 * reg[:, 3].exp()
        boxes = torch.stack([cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2], dim=-1)
        return {"boxes": boxes.flatten(1, 2), "scores": scores}


@pytest.fixture
def detection():
    torch.manual_seed(0)
    model = DenseDetector().eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        out = model(x)
    picks = [2, 9, 14]  # the candidate each sample's box is taken from
    boxes = torch.stack([out["boxes"][i, m] for i, m in enumerate(picks)])
    return model, x, out, picks, boxes


def test_box_gradcam_explains_the_matched_detections_score(detection):
    model, x, out, picks, boxes = detection
    categories = [0, 2, 1]
    e = xai.explain(model, x, layer="body.2", target=Box(boxes, categories))

    def score(output):
        return output["scores"][torch.arange(3), torch.tensor(picks), torch.tensor(categories)]

    expected = gradcam_reference(model, model.body[2], x, score)
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(e.scores, score(out))
    assert e.targets.tolist() == categories
    assert e.explained[1].startswith("box (") and e.explained[1].endswith("class 2")


def test_box_matches_by_largest_iou(detection):
    model, x, out, picks, boxes = detection
    shifted = boxes[0] + torch.tensor([0.5, 0.5, 0.5, 0.5])  # nearest is still pick 0
    ious = box_iou(out["boxes"][0], shifted)
    best = int(ious.argmax())
    e = xai.explain(model, x[:1], layer="body.2", target=Box(shifted, 1, iou=0.3))
    torch.testing.assert_close(e.scores[0], out["scores"][0, best, 1])
    assert best == picks[0]


def test_box_without_a_match_is_refused(detection):
    model, x, *_ = detection
    far = torch.tensor([100.0, 100.0, 110.0, 110.0])
    with pytest.raises(xai.XAIValueError, match=r"sample 0 has no detection of class 1.*best IoU"):
        xai.explain(model, x[:1], layer="body.2", target=Box(far, 1))


def test_box_reads_torchvision_lists_of_dicts(detection):
    model, x, out, picks, boxes = detection

    class Listed(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            o = self.inner(x)
            best, label = o["scores"].max(dim=2)  # one label per candidate
            return [
                {"boxes": b, "scores": s, "labels": lab}
                for b, s, lab in zip(o["boxes"], best, label, strict=True)
            ]

    labels = out["scores"].argmax(2)[torch.arange(3), torch.tensor(picks)].tolist()
    dense = xai.explain(model, x, layer="body.2", target=Box(boxes, labels))
    listed = xai.explain(Listed().eval(), x, layer="inner.body.2", target=Box(boxes, labels))
    torch.testing.assert_close(listed.raw, dense.raw)


def test_box_score_cam_batch_equals_each_image_alone(detection):
    model, x, _, _, boxes = detection
    batch = xai.explain(
        model, x, method="scorecam", layer="body.2", target=Box(boxes, [0, 1, 2]), batch_size=5
    )
    for i in range(3):
        alone = xai.explain(
            model, x[i : i + 1], method="scorecam", layer="body.2",
            target=Box(boxes[i], i), batch_size=5,
        )  # fmt: skip
        torch.testing.assert_close(batch.raw[i], alone.raw[0], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------- similarity


def test_similarity_explains_the_cosine_to_each_samples_reference():
    model = make_gapcnn()  # its 5 outputs serve as an embedding
    torch.manual_seed(6)
    x = torch.rand(3, 1, 16, 16)
    references = torch.randn(3, 5)
    e = xai.explain(model, x, target=Similarity(references))

    def score(out):
        return F.cosine_similarity(out, references, dim=1)

    expected = gradcam_reference(model, model.features[10], x, score)
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)
    assert e.targets.tolist() == [-1, -1, -1]
    assert e.explained[0] == "cosine similarity to a 5-d embedding"
    with pytest.raises(xai.XAIValueError, match="embeddings have 5 dimensions, the reference 4"):
        xai.explain(model, x, target=Similarity(torch.randn(4)))


# ---------------------------------------------------------------- custom and mixed


class Margin(Target):
    """The logit of a class minus each sample's runner-up class (per-sample data)."""

    def __init__(self, first: list[int], second: list[int]) -> None:
        self.first, self.second = torch.tensor(first), torch.tensor(second)

    def score(self, output, samples, *, probabilities=False):
        rows = torch.arange(len(samples))
        return output[rows, self.first[samples]] - output[rows, self.second[samples]]


def test_a_custom_target_is_told_which_sample_each_row_is(gray):
    model = make_gapcnn()
    target = Margin([0, 1, 2, 3], [4, 3, 2, 1])
    batch = xai.explain(model, gray, method="scorecam", target=target, batch_size=5, softmax=False)
    for i in range(4):
        alone = xai.explain(
            model, gray[i : i + 1], method="scorecam", softmax=False, batch_size=5,
            target=lambda out, i=i: out[:, target.first[i]] - out[:, target.second[i]],
        )  # fmt: skip
        torch.testing.assert_close(batch.raw[i], alone.raw[0], rtol=1e-4, atol=1e-6)
    assert batch.explained == ("Margin",) * 4


def test_a_list_may_mix_ints_and_targets(gray):
    model = make_gapcnn()
    margin = Margin([0, 0, 2, 0], [0, 0, 4, 0])
    mixed = xai.explain(model, gray, target=[1, Class(3), margin, 0])
    for i, single in enumerate([1, 3, None, 0]):
        t = margin if single is None else single
        alone = xai.explain(model, gray, target=t)
        torch.testing.assert_close(mixed.raw[i], alone.raw[i], rtol=1e-5, atol=1e-6)
    assert mixed.targets.tolist() == [1, 3, -1, 0]
    assert mixed.explained == ("class 1", "class 3", "Margin", "class 0")


def test_class_scores_each_row_with_its_own_samples_class(gray):
    """Rows of a chunk belong to samples [1, 0, 1]; sample 0 explains class 2 and sample 1
    class 0: the scores are output[0, 0], output[1, 2], output[2, 0] (by hand), and their
    softmax probabilities with ``probabilities=True``."""
    output = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0], [0.5, -1.0, 2.0]])
    samples = torch.tensor([1, 0, 1])
    target = Class([2, 0])
    torch.testing.assert_close(target.score(output, samples), torch.tensor([1.0, 7.0, 0.5]))
    p = torch.softmax(output, dim=1)
    expected = torch.stack([p[0, 0], p[1, 2], p[2, 0]])
    torch.testing.assert_close(target.score(output, samples, probabilities=True), expected)
    shared = Class(1)
    torch.testing.assert_close(shared.score(output, samples), torch.tensor([2.0, 5.0, -1.0]))
    with pytest.raises(xai.XAIValueError, match="target has 2 entries but the inputs hold 4"):
        xai.explain(make_gapcnn(), gray, target=[Class(1), 2])
