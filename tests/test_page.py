"""``index.html``: the page each ``xai explain`` and ``xai report`` run writes. Built from
the run's manifests, self-contained (nothing loaded from elsewhere), every name escaped,
every picture a file the run wrote; loaded in a real headless browser where there is one
(Debian: ``apt-get install -y chromium``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

import xai
from xai.cli import main
from xai.viz.page import PAGE, explain_page, report_page

SAMPLES = dict(xai.models.sample_images())  # class name -> PNG path
HOSTILE = '<script>alert("x")<\\script> & <b> 100% #1?.png'  # a legal file name on Linux
CLASS = "<img src=x onerror=alert(1)>"


class _Page(HTMLParser):
    """Every tag with its attributes, and the text, as a browser's parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def links(self, tag: str, attribute: str) -> list[str]:
        return [attrs[attribute] for t, attrs in self.tags if t == tag and attribute in attrs]


def _assert_self_contained(text: str) -> _Page:
    """No script, no external style, font, frame or image; no event handler attributes."""
    page = _Page(text)
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "base", "form"}, names
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for attribute in ("src", "href", "srcset", "poster", "data"):
            value = attrs.get(attribute, "")
            if value:
                assert not re.match(r"^\s*([a-z][a-z0-9+.-]*:|//)", value, re.I), (tag, value)
    styles = re.findall(r"<style>(.*?)</style>", text, re.S)
    assert len(styles) == 1
    assert not re.search(r"url\(|@import|@font-face|//", styles[0])
    assert re.search(r"default-src 'none'", text)  # the browser may load nothing else
    return page


def _manifest(image: str, methods: list[str], predicted: str = "Sneaker") -> dict:
    """A manifest as xai explain writes it (the fields the page reads)."""
    return {
        "image": {"path": f"in/{image}", "height": 28, "width": 28, "mode": "gray"},
        "input_size": [1, 28, 28],
        "model": {"spec": "builtin:fashion-mnist", "kind": "builtin", "device": "cpu"},
        "prediction": [
            {"index": 7, "class": predicted, "probability": 0.875, "logit": 3.0},
            {"index": 2, "class": CLASS, "probability": 0.125, "logit": 1.0},
        ],
        "explanations": [
            {
                "method": m,
                "layer": "features.18",
                "target": 2,
                "target_class": CLASS,
                "class_specific": True,
                "score": 1.0,
                "raw_max": 0.002 if m == "cam" else 0.5,
                "raw_max_relative_to_top1": 0.004 if m == "cam" else 0.5,
                "near_empty": m == "cam",
                "files": {k: f"{m}_{k}.png" for k in ("overlay", "heatmap")},
            }
            for m in methods
        ],
        "display": {"height": 224, "width": 224, "alpha": 0.5, "colormap": "jet"},
        "versions": {"xai-toolkit": xai.__version__},
        "comparison": "comparison.png",
    }


# ---------------------------------------------------------------- the pure generators


def test_explain_page_escapes_names_and_links_only_the_runs_files():
    manifests = [
        (HOSTILE, _manifest(HOSTILE, ["gradcam", "cam"])),
        ("a b.png", _manifest("a b.png", ["gradcam"])),
    ]
    text = explain_page(manifests)
    page = _assert_self_contained(text)
    assert "<script>alert" not in text and "<img src=x" not in text
    words = "".join(page.text)
    assert HOSTILE in words and CLASS in words  # shown as text, exactly
    sources = [unquote(src) for src in page.links("img", "src")]
    assert sources == [
        f"{HOSTILE}/gradcam_overlay.png",
        f"{HOSTILE}/cam_overlay.png",
        "a b.png/gradcam_overlay.png",
    ]
    for href in page.links("a", "href"):
        if not href.startswith("#"):
            folder = unquote(urlsplit(href).path).split("/")[0]
            assert folder in (HOSTILE, "a b.png"), href
            assert "?" not in href and "#" not in href  # a name's '?', '#' and '%' encoded
    # what each section says: the prediction, the top-5 rows, the weak map flagged
    assert "predicted Sneaker 87.5%" in " ".join(words.split())
    rows = [tag for tag, _ in page.tags if tag == "tr"]
    assert len(rows) == 2 * 3  # a header and two predictions, per image
    assert words.count("near-empty map") == 1  # cam on the first image only
    assert "map vs top-1 50%" in words


def test_report_page_shows_the_figures_and_the_class_table():
    summary = {
        "store": "<run>.zarr",
        "samples": 30,
        "methods": ["gradcam"],
        "layers": {"gradcam": "features.18"},
        "counts_by": "true label",
        "confidence": "top-class softmax probability",
        "accuracy": 0.9,
        "mean_confidence": 0.8,
        "classes": [
            {"class": 0, "name": CLASS, "count": 20, "predicted": 19, "accuracy": 0.95,
             "mean_confidence": 0.85},
            {"class": 1, "name": "Trouser", "count": 10, "predicted": 11, "accuracy": 0.8,
             "mean_confidence": None},
        ],
        "figures": ["class_means.png", "confident.png"],
        "images": "shown",
    }  # fmt: skip
    text = report_page(summary)
    page = _assert_self_contained(text)
    assert page.links("img", "src") == ["class_means.png", "confident.png"]
    assert "summary.json" in page.links("a", "href")
    cells = re.findall(r"<tr>(.*?)</tr>", text)
    values = [
        [_Page(c).text for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)] for row in cells
    ]
    assert [v[0] for v in values[0]] == [
        "class",
        "name",
        "samples",
        "predicted",
        "accuracy",
        "mean confidence",
    ]
    assert values[1] == [["0"], [CLASS], ["20"], ["19"], ["95%"], ["0.850"]]
    assert values[2] == [["1"], ["Trouser"], ["10"], ["11"], ["80%"], ["-"]]
    assert "<img src=x" not in text and "&lt;run&gt;.zarr" in text


# ------------------------------------------------------------------ the real commands


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> Path:
    """xai explain on two images (one with a hostile name), two methods, in process."""
    root = tmp_path_factory.mktemp("page")
    inputs = root / "in"
    inputs.mkdir()
    shutil.copy(SAMPLES["Sneaker"], inputs / HOSTILE)
    shutil.copy(SAMPLES["Bag"], inputs / "8 bag #1.png")
    out = root / "out"
    assert main(["explain", str(inputs), "--method", "gradcam,cam", "--out", str(out), "-q"]) == 0
    return out


def test_explain_writes_the_page_of_the_run(explained):
    text = (explained / PAGE).read_text(encoding="utf-8")
    page = _assert_self_contained(text)
    folders = sorted(p.name for p in explained.iterdir() if p.is_dir())
    assert folders == sorted([HOSTILE, "8 bag #1.png"])
    expected = []
    for folder in folders:  # the page lists the folders in the run's order; compare as sets
        manifest = json.loads((explained / folder / "manifest.json").read_text())
        assert manifest["model"]["device"] == "cpu" or manifest["model"]["device"].startswith(
            ("cuda", "mps")
        )
        expected += [f"{folder}/{e['files']['overlay']}" for e in manifest["explanations"]]
        top = manifest["prediction"][0]
        assert f"{top['class']} {100 * top['probability']:.4g}%" in "".join(page.text)
    sources = [unquote(s) for s in page.links("img", "src")]
    assert sorted(sources) == sorted(expected)
    for href in page.links("a", "href"):
        if not href.startswith("#"):
            assert (explained / unquote(href)).exists(), href  # every link is a written file


def test_a_failed_run_leaves_the_last_page_as_it_was(explained, tmp_path):
    before = (explained / PAGE).read_bytes()
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    status = main(["explain", str(SAMPLES["Coat"]), str(bad), "--out", str(explained), "-q"])
    assert status == 2  # refused: nothing of this run is written, the page included
    assert (explained / PAGE).read_bytes() == before
    assert not list(explained.glob(".*"))  # no partial page or folder


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    images = root / "in"
    images.mkdir()
    for name in ("Sneaker", "Bag", "Coat"):
        shutil.copy(SAMPLES[name], images / SAMPLES[name].name)
    store, out = root / "s.zarr", root / "report"
    assert (
        main(["explain-dataset", str(images), "--store", str(store), "-m", "gradcam,cam", "-q"])
        == 0
    )
    assert main(["report", str(store), "--out", str(out), "--per-class", "1"]) == 0
    return out


def test_report_writes_the_page_of_its_figures(reported):
    text = (reported / PAGE).read_text(encoding="utf-8")
    page = _assert_self_contained(text)
    summary = json.loads((reported / "summary.json").read_text())
    assert page.links("img", "src") == summary["figures"]
    names = [entry["name"] for entry in summary["classes"]]
    assert all(name in page.text for name in names)


# ------------------------------------------------------------------------ in a browser

BROWSER = next(
    (
        found
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (found := shutil.which(name))
    ),
    None,
)
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)"
)

# Added to a copy of the page (the page itself has no script, and its policy forbids one):
# after every image has loaded or failed, the count of images and the broken ones.
_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((i) => !i.complete || i.naturalWidth === 0);
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken", JSON.stringify(broken.map((i) => i.src)));
});
</script>"""


def _browser(*args: str) -> str:
    result = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _loaded_images(folder: Path) -> tuple[int, list[str]]:
    """Open a copy of the page, with the page's own image policy and the probe allowed,
    beside it (the same relative links); return how many images and which broke."""
    text = (folder / PAGE).read_text(encoding="utf-8")
    text = text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    probe = folder / ".probe.html"
    probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        dom = _browser("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r'data-images="(\d+)" data-broken="([^"]*)"', dom)
    assert found, dom[:2000]
    return int(found[1]), json.loads(found[2].replace("&quot;", '"'))


def _screenshot(folder: Path, tmp_path: Path, size: str) -> np.ndarray:
    shot = tmp_path / "shot.png"
    _browser(f"--window-size={size}", f"--screenshot={shot}", (folder / PAGE).as_uri())
    return np.asarray(Image.open(shot).convert("RGB")).astype(int)


def _colours(pixels: np.ndarray) -> tuple[int, int]:
    """How many pixels are clearly warm (red to yellow) and clearly cold (blue)."""
    red, blue = pixels[..., 0], pixels[..., 2]
    return int(((red > blue + 80) & (red > 150)).sum()), int((blue > red + 80).sum())


@needs_browser
def test_the_explain_page_loads_every_image_in_a_browser(explained, tmp_path):
    count, broken = _loaded_images(explained)
    assert count == 4 and broken == []  # 2 images x 2 methods, every one decoded
    pixels = _screenshot(explained, tmp_path, "1200,1400")
    assert pixels.reshape(-1, 3).std(axis=0).min() > 20  # not one colour
    # The overlays drawn: the colormap's warm and cold colours cover far more than the
    # page's few coloured words (blue links) could; an unloaded image draws neither.
    warm, cold = _colours(pixels)
    assert warm > 5000 and cold > 40000, (warm, cold)


@needs_browser
def test_the_report_page_loads_every_image_in_a_browser(reported, tmp_path):
    count, broken = _loaded_images(reported)
    assert count == 2 and broken == []
    pixels = _screenshot(reported, tmp_path, "1200,1600")
    assert pixels.reshape(-1, 3).std(axis=0).min() > 20
    warm, cold = _colours(pixels)
    assert warm > 5000 and cold > 40000, (warm, cold)


@needs_browser
def test_a_broken_image_is_caught_by_the_browser_check(explained, tmp_path):
    """The check itself: a page whose picture is missing reports it broken."""
    copy = tmp_path / "copy"
    shutil.copytree(explained, copy)
    next(copy.rglob("cam_overlay.png")).unlink()
    count, broken = _loaded_images(copy)
    assert count == 4 and len(broken) == 1 and unquote(broken[0]).endswith("cam_overlay.png")
