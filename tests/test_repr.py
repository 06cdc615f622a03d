"""Notebook display and plots of the result types; the instance's values in Shapley results;
``xai.integrations`` after a plain ``import xai``."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch

import xai
from tests.conftest import make_gapcnn
from xai.explanation import IMPORTANCE_LABEL
from xai.shapley import ModelGame
from xai.viz._mpl import pyplot
from xai.viz.overlay import colorize, overlay

_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')

HOSTILE = "<script>alert('x')</script>"


def _pngs(html: str) -> list[np.ndarray]:
    """Every inline PNG of ``html``, decoded to RGB uint8."""
    images = []
    for encoded in _IMG.findall(html):
        buffer = np.frombuffer(base64.b64decode(encoded), dtype=np.uint8)
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        assert bgr is not None, "an embedded PNG does not decode"
        images.append(bgr[..., ::-1])
    return images


def _self_contained(html: str) -> None:
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html.lower() and "<link" not in html.lower()


@pytest.fixture(scope="module")
def explained():
    torch.manual_seed(3)
    x = torch.rand(3, 1, 16, 16)
    model = make_gapcnn()
    return x, xai.explain(model, x, method="gradcam", target=[1, 4, 2])


@pytest.fixture
def close_figures():
    yield
    pyplot().close("all")


# ------------------------------------------------------------------ Explanation


def test_explanation_html_embeds_each_map_with_its_class_and_score(explained):
    _, e = explained
    html = e._repr_html_()
    _self_contained(html)
    pictures = _pngs(html)
    assert len(pictures) == len(e) + 1  # a panel per map, then the colour scale
    maps = [e.maps[i].numpy() for i in range(len(e))]
    assert not np.array_equal(colorize(maps[0]), colorize(maps[1]))  # the maps differ
    for i in range(len(e)):  # each panel is the heat map of its own sample, pixel for pixel
        assert np.array_equal(pictures[i], colorize(maps[i]))
    for target, score in zip([1, 4, 2], e.scores.tolist(), strict=True):
        assert f"class {target}<br>score {score:.4g}" in html
    assert "gradcam at features" in html and f"{e.layer}" in html
    assert IMPORTANCE_LABEL in html
    scale = pictures[-1]  # blue (0) to red (1)
    assert np.array_equal(scale[0], colorize(np.linspace(0, 1, 160)[None])[0])


def test_explanation_html_over_the_images_matches_xai_viz_overlay(explained):
    x, e = explained
    names = [f"garment {k}" for k in range(5)]
    html = e.to_html(x, class_names=names, alpha=0.4)
    pictures = _pngs(html)
    for i in range(len(e)):
        assert np.array_equal(pictures[i], overlay(x[i], e.maps[i].numpy(), 0.4))
    assert not np.array_equal(pictures[0], overlay(x[0], e.maps[1].numpy(), 0.4))
    assert "garment 1 (class 1)" in html and "garment 4 (class 4)" in html
    with pytest.raises(xai.XAIValueError, match="2 images for 3 maps"):
        e.to_html(x[:2])


def test_explanation_html_caps_the_panels():
    torch.manual_seed(0)
    x = torch.rand(11, 1, 12, 12)
    e = xai.explain(make_gapcnn(), x, method="cam")
    html = e._repr_html_()
    assert len(_pngs(html)) == 8 + 1
    assert "and 3 more" in html
    assert len(_pngs(e.to_html(limit=2))) == 2 + 1
    with pytest.raises(xai.XAIValueError):
        e.to_html(limit=0)


def test_explanation_html_escapes_its_text():
    maps = torch.rand(1, 4, 4)
    e = xai.Explanation(
        maps=maps,
        raw=maps,
        targets=torch.tensor([0]),
        scores=torch.tensor([1.5]),
        method=HOSTILE,
        layer="a&b",
        explained=(HOSTILE,),
    )
    for html in (e._repr_html_(), e.to_html(class_names=[HOSTILE])):
        _self_contained(html)
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
        assert "a&amp;b" in html


def test_explanation_plot_titles_panels_and_colour_bar(explained, close_figures):
    x, e = explained
    names = [f"garment {k}" for k in range(5)]
    fig = e.plot(x, class_names=names, limit=2)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    for i, ax in enumerate(panels):
        target = int(e.targets[i])
        score = float(e.scores[i])
        assert ax.get_title() == f"garment {target} (class {target})\nscore {score:.4g}"
        drawn = np.asarray(ax.images[0].get_array())
        assert np.array_equal(drawn, overlay(x[i], e.maps[i].numpy(), 0.5))
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert IMPORTANCE_LABEL in labels
    title = fig._suptitle.get_text()
    assert f"gradcam at {e.layer}" in title and "1 more not shown" in title
    heat = e.plot()  # no images: the heat maps alone
    assert np.array_equal(heat.axes[0].images[0].get_array(), colorize(e.maps[0].numpy()))


# ------------------------------------------------------------------ ShapleyResult


def _linear():
    weights = np.array([2.0, -1.0, 0.5])
    x = np.array([3.0, 1.0, 4.0])
    game = ModelGame(lambda rows: rows @ weights, x, np.zeros(3), feature_names=["a", "b", "c"])
    return game, x


def test_shapley_html_has_the_table_and_a_waterfall():
    r = xai.exact_shapley(xai.shapley.housing(), exact=True)
    html = r._repr_html_()
    _self_contained(html)
    for text in ("year_built", "11/6 (1.8333)", "10/3 (3.3333)", "29/6 (4.8333)"):
        assert text in html
    assert re.search(r"v\(empty\)</td><td[^>]*>20 \(20\.0000\)", html)
    assert re.search(r"v\(all\)</td><td[^>]*>30 \(30\.0000\)", html)
    (picture,) = _pngs(html)
    assert picture.shape[0] > 150 and picture.std() > 10  # a drawn chart, not a blank


def test_shapley_html_shows_standard_errors_and_escapes_names():
    game, _ = _linear()
    game.feature_names = (HOSTILE, "b&c", "plain")
    r = xai.shapley.permutation_shapley(game, n_permutations=16, seed=0)
    html = r.to_html()
    _self_contained(html)
    assert "<script>" not in html and "&lt;script&gt;" in html and "b&amp;c" in html
    assert "standard error" in html
    for v, s in zip(r.values, r.stderr, strict=True):
        assert f">{v:.4f}</td><td" in html and f">{s:.4f}</td>" in html


def test_shapley_plot_is_the_waterfall_from_base_to_full(close_figures):
    game, _ = _linear()
    r = xai.exact_shapley(game)  # values 6, -1, 2 from v(empty) = 0 to v(all) = 7
    fig = r.plot()
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "c", "b"]  # by |value|
    assert ax.get_title() == "Shapley values (exact)"
    assert "v(∅)" in ax.get_xlabel()
    bars = sorted(ax.patches, key=lambda p: p.get_y())
    assert len(bars) == 3
    ends = np.concatenate([[r.base_value], r.base_value + np.cumsum(r.values[[0, 2, 1]])])
    assert ends[-1] == pytest.approx(r.full_value)
    for row, patch in enumerate(bars):
        left, right = patch.get_x(), patch.get_x() + patch.get_width()
        assert sorted([left, right]) == pytest.approx(sorted(ends[row : row + 2]))


def test_table_values_start_in_one_column():
    game, _ = _linear()
    for result in (
        xai.exact_shapley(game),
        xai.shapley.permutation_shapley(game, n_permutations=8, seed=0),
        xai.exact_shapley(xai.shapley.housing(), exact=True),
    ):
        lines = result.table().splitlines()
        columns = {re.match(r"\S+\s+", line).end() for line in lines}
        assert len(columns) == 1, result.table()
        assert lines[-2].startswith("v(empty)") and lines[-1].startswith("v(all)")


# ------------------------------------------------------------------ data


def test_a_model_game_result_carries_its_instance():
    shap_wrap = pytest.importorskip("xai.integrations.shap")
    pytest.importorskip("shap")
    game, x = _linear()
    for r in (
        xai.exact_shapley(game),
        xai.shapley.permutation_shapley(game, n_permutations=4, seed=0),
        xai.shapley.kernel_shap(game, n_samples=64, seed=0, n_bootstrap=2),
    ):
        assert np.array_equal(r.data, x)
        assert np.array_equal(shap_wrap.to_explanation(r).data, x)
        assert np.array_equal(r.to_shap().data, x)
    torch_game = ModelGame(lambda t: t.sum(1), torch.tensor([1.0, 2.0]), torch.zeros(2))
    assert np.array_equal(xai.exact_shapley(torch_game).data, [1.0, 2.0])
    table = xai.exact_shapley(xai.shapley.housing())
    assert table.data is None and table.to_shap().data is None
    assert xai.exact_shapley({(): 0, (0,): Fraction(1)}).data is None


# ------------------------------------------------------------------ xai.integrations


def test_integrations_are_attributes_after_import_xai():
    code = (
        "import sys, json, xai\n"
        "assert 'integrations' in dir(xai)\n"
        "ok = callable(xai.integrations.shap.to_explanation)\n"
        "ok = ok and callable(xai.integrations.captum.integrated_gradients)\n"
        "try:\n    xai.integrations.nothing\nexcept AttributeError:\n    pass\n"
        "else:\n    ok = False\n"
        "print(json.dumps([ok, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('shap', 'captum', 'matplotlib', 'cv2'))]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    ok, heavy = json.loads(out.strip().splitlines()[-1])
    assert ok and heavy == []


def test_shapley_html_over_rows_summarises_each_feature(close_figures):
    weights = np.array([1.0, -2.0, 0.5])
    rows = np.arange(12.0).reshape(4, 3)
    r = xai.shapley.explain_rows(lambda v: v @ weights, rows, np.zeros((1, 3)))
    html = r.to_html()
    _self_contained(html)
    # x1's values are -2 * (1, 4, 7, 10): mean |value| 11, mean -11; listed first
    assert re.search(r">x1</td><td[^>]*>11\.0000</td><td[^>]*>-11\.0000<", html)
    assert html.index(">x1<") < html.index(">x0<") < html.index(">x2<")
    assert "4 rows" in html and len(_pngs(html)) == 1
    fig = r.plot()  # the beeswarm: one line of dots per feature
    assert {t.get_text() for t in fig.axes[0].get_yticklabels()} >= {"x0", "x1", "x2"}
