"""``MapPictures`` reuses one figure per layout: its PNGs must be, pixel for pixel, the ones
a fresh ``map_figure`` draws, whatever came before them."""

from __future__ import annotations

import cv2
import numpy as np

from xai.viz import grids, map_pictures
from xai.viz._mpl import pyplot
from xai.viz.grids import map_figure, save_figure
from xai.viz.map_pictures import MapPictures


def _read(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_reused_figures_draw_exactly_what_fresh_ones_draw(tmp_path, monkeypatch):
    monkeypatch.setattr(map_pictures, "_KEPT", 3)  # evictions happen within the test
    rng = np.random.default_rng(0)
    long = "Ankle boot  97.1 %  — gradcam++ explained at features.18 with a title long enough"
    cases = []
    for i in range(14):
        shape = [(28, 28, 3), (40, 28, 3), (28, 90, 3)][i % 3]
        title = long * (1 + (i // 4) % 2) if i % 4 == 0 else f"Bag  {90 + i}.0 %  — gradcam"
        cases.append(
            {
                "pixels": (rng.random(shape) * 255).astype(np.uint8),
                "title": title,  # one, two or four lines once wrapped
                "colormap": ["jet", "viridis"][i % 5 == 0],
                "note": "near-empty: 3 % of the top-1 map" if i % 3 == 1 else None,
            }
        )
    built = []

    def counted(*args, **kwargs):
        built.append(kwargs["title"])
        return map_figure(*args, **kwargs)

    monkeypatch.setattr(grids, "map_figure", counted)
    before = len(pyplot().get_fignums())
    with MapPictures() as pictures:
        for i, case in enumerate(cases):
            pictures.save(case["pixels"], tmp_path / f"reused-{i}.png", title=case["title"],
                          colormap=case["colormap"], note=case["note"])  # fmt: skip
            assert len(pictures._figures) <= 3
    assert len(pyplot().get_fignums()) == before  # every figure closed
    assert 3 < len(built) < len(cases)  # figures were reused, and rebuilt after eviction
    for i, case in enumerate(cases):
        figure = map_figure(case["pixels"], title=case["title"], colormap=case["colormap"],
                            note=case["note"])  # fmt: skip
        save_figure(figure, tmp_path / f"fresh-{i}.png", dpi=100)
        reused, fresh = _read(tmp_path / f"reused-{i}.png"), _read(tmp_path / f"fresh-{i}.png")
        assert reused.shape == fresh.shape, i
        assert np.array_equal(reused, fresh), (i, int((reused != fresh).any(axis=2).sum()))


def test_a_changed_title_changes_the_picture(tmp_path):
    """The reuse is not a stale copy: another title or other pixels give another PNG."""
    pixels = np.zeros((28, 28, 3), np.uint8)
    with MapPictures() as pictures:
        pictures.save(pixels, tmp_path / "a.png", title="Bag  99.0 %  — gradcam")
        pictures.save(pixels, tmp_path / "b.png", title="Coat  51.0 %  — gradcam")
        pictures.save(pixels + 200, tmp_path / "c.png", title="Coat  51.0 %  — gradcam")
    a, b, c = (_read(tmp_path / f"{n}.png") for n in "abc")
    assert not np.array_equal(a, b) and not np.array_equal(b, c)
    rows = np.flatnonzero((a != b).any(axis=(1, 2)))
    assert rows.max() < a.shape[0] // 3  # only the title, above the image, differs
