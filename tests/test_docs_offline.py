"""The docs site works with no network: every equation is MathML written when the site is
built (``scripts/mkdocs_hooks.py``, with latex2mathml), the theme uses the system's fonts,
and no page or stylesheet loads anything from another host. Checked on one build of the
site, and in a real headless browser with networking off where there is one."""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_docs import _tool
from tests.test_page import _browser, _Page, needs_browser

ROOT = Path(__file__).resolve().parent.parent
MATHS_PAGES = ["concepts", "shapley", "api"]  # the pages with equations (api: docstrings)
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND"  # no host name resolves: no network

# (tag, attribute) pairs through which a page makes the browser load something.
LOADS = [
    ("script", "src"),
    ("link", "href"),
    ("img", "src"),
    ("iframe", "src"),
    ("source", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
    ("object", "data"),
]


def _build(site: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("mkdocs"), "build", "--strict", "--site-dir", str(site)],
        cwd=cwd,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("latex2mathml")
    out = tmp_path_factory.mktemp("offline") / "site"
    result = _build(out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _hooks():
    spec = importlib.util.spec_from_file_location(
        "mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ nothing from elsewhere


def _external(url: str) -> bool:
    """Whether loading ``url`` from a page of the site would reach another host."""
    return bool(re.match(r"^\s*([a-z][a-z0-9+.-]*:)?//", url, re.I))


def _css_targets(css: str) -> list[str]:
    """Every address a stylesheet loads: its url(...) values and @import targets."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    urls = re.findall(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"]*))\s*\)""", css)
    imports = re.findall(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", css)
    return [next(part for part in found if part) if any(found) else "" for found in urls + imports]


def test_the_checks_catch_what_the_site_used_to_load():
    """The detectors themselves, on the CDN script and the theme's old font import."""
    assert _external("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js")
    assert _external("//fonts.gstatic.com") and _external("HTTP://example.org/a.css")
    assert not _external("../assets/javascripts/bundle.js") and not _external("search/")
    css = (
        '@import "https://fonts.googleapis.com/css?family=Roboto";\n'
        "@font-face { src: url(https://fonts.gstatic.com/s/roboto.woff2) }\n"
        'a { background: url("data:image/svg+xml;charset=utf-8,<svg/>") }'
    )
    targets = _css_targets(css)
    assert [t for t in targets if _external(t)] == [
        "https://fonts.gstatic.com/s/roboto.woff2",
        "https://fonts.googleapis.com/css?family=Roboto",
    ]


def test_no_page_or_stylesheet_loads_anything_from_another_host(site):
    pages = sorted(site.rglob("*.html"))
    stylesheets = sorted(site.rglob("*.css"))
    assert len(pages) > 15 and len(stylesheets) >= 3  # every page, the theme's CSS, extra.css
    found = []
    for path in pages:
        text = path.read_text(encoding="utf-8")
        page = _Page(text)
        for tag, attribute in LOADS:
            found += [(path, tag, url) for url in page.links(tag, attribute) if _external(url)]
        found += [
            (path, "srcset", url)
            for srcset in page.links("img", "srcset") + page.links("source", "srcset")
            for url in srcset.split(",")
            if _external(url)
        ]
        styles = re.findall(r"<style[^>]*>(.*?)</style>", text, re.S)
        styles += [attrs["style"] for _, attrs in page.tags if "style" in attrs]
        found += [(path, "style", url) for css in styles for url in _css_targets(css)]
    for path in stylesheets:
        found += [(path, "css", url) for url in _css_targets(path.read_text(encoding="utf-8"))]
    found = [(path, where, url) for path, where, url in found if _external(url)]
    assert found == []
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis" not in home and "fonts.gstatic" not in home  # font: false
    assert "mathjax" not in home.lower()
    assert (site / "stylesheets" / "extra.css").is_file()


# ---------------------------------------------------------------------- maths as MathML


class _Text(HTMLParser):
    """The text a reader sees: outside code blocks and MathML's TeX annotations."""

    SKIP = frozenset({"code", "pre", "annotation", "script", "style"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.parts: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.depth += tag in self.SKIP

    def handle_endtag(self, tag: str) -> None:
        self.depth -= tag in self.SKIP

    def handle_data(self, data: str) -> None:
        if not self.depth:
            self.parts.append(data)


def _equations(text: str) -> list[tuple[str, str]]:
    """A built page's equations: (TeX annotation, MathML before it), in page order."""
    found = re.findall(r"<semantics>(.*?)<annotation[^>]*>(.*?)</annotation>", text, re.S)
    return [(html.unescape(tex), body) for body, tex in found]


def _display_blocks(markdown: str) -> int:
    """How many $$ ... $$ equations a page's source has, outside fenced code."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return len(re.findall(r"^\$\$$", prose, flags=re.M)) // 2


@pytest.mark.parametrize("name", MATHS_PAGES)
def test_every_equation_is_mathml_and_no_tex_is_left(site, name):
    text = (site / name / "index.html").read_text(encoding="utf-8")
    wrappers = re.findall(r'<(span|div) class="arithmatex">(.*?)</\1>', text, re.S)
    assert len(wrappers) >= 4
    for tag, inner in wrappers:  # each one a single <math>, block for display maths
        display = "block" if tag == "div" else "inline"
        assert re.fullmatch(rf'<math [^>]*display="{display}"><semantics>.*</math>', inner, re.S), (
            inner
        )
        assert inner.count("<math ") == 1
    assert text.count("<math ") == len(wrappers)
    seen = "".join(_Text(text).parts)
    for delimiter in ("\\(", "\\)", "\\[", "\\]", "$$", "\\frac", "\\sum"):
        assert delimiter not in seen, (name, delimiter)
    if name != "api":  # the source's $$ blocks are the page's block <math> elements
        source = (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8")
        blocks = sum(tag == "div" for tag, _ in wrappers)
        assert blocks == _display_blocks(source) > 0


def test_known_equations_convert_to_the_right_mathml(site):
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    # F_k = \frac{1}{hw}\sum_{i,j} A^k_{ij}: a fraction 1 over hw, a sum under i,j, and
    # A with subscript ij and superscript k.
    gap = next(body for tex, body in _equations(concepts) if tex.startswith("F_k = "))
    assert gap.startswith("<mrow><msub><mi>F</mi><mi>k</mi></msub><mo>=</mo>")
    assert "<mfrac><mrow><mn>1</mn></mrow><mrow><mi>h</mi><mi>w</mi></mrow></mfrac>" in gap
    assert "<munder><mo>∑</mo><mrow><mi>i</mi><mo>,</mo><mi>j</mi></mrow></munder>" in gap
    assert "<msubsup><mi>A</mi><mrow><mi>i</mi><mi>j</mi></mrow><mi>k</mi></msubsup>" in gap
    # Greek letters as characters; an upright multi-letter name.
    assert "<msubsup><mi>α</mi><mi>k</mi><mi>c</mi></msubsup>" in concepts
    assert '<mi mathvariant="normal">R</mi><mi mathvariant="normal">e</mi>' in concepts
    # "<" in TeX stays an escaped operator (latex2mathml's own string output unescapes it
    # into a stray tag); \mathbb{R} becomes the double-struck letter MathML Core renders.
    shapley = (site / "shapley" / "index.html").read_text(encoding="utf-8")
    assert "<mo>≤</mo><mi>s</mi><mo>&lt;</mo><msub><mi>a</mi>" in shapley
    # \setminus as the set-minus operator (latex2mathml: U+29F5, which fonts lack, as an
    # identifier); |S| set tight, as TeX does, not spaced as an infix operator.
    assert "<mi>N</mi><mo>∖</mo>" in shapley and "\u29f5" not in shapley
    assert '<mo stretchy="false" lspace="0" rspace="0">|</mo><mi>S</mi>' in shapley
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "<msup><mi>ℝ</mi>" in api and 'mathvariant="double-struck"' not in api
    assert "<mo>arg</mo><msub><mo>max</mo>" in api  # \arg, mapped to \operatorname{arg}


def test_an_equation_that_does_not_convert_fails_the_build(tmp_path):
    """An unknown macro is a build error naming the page and the TeX, never raw TeX."""
    hooks = _hooks()
    with pytest.raises(ValueError, match=r"\\notamacro"):
        hooks.tex_to_mathml(r"\(x = \notamacro{y}\)", block=False)
    with pytest.raises(ValueError, match="between"):
        hooks.tex_to_mathml(r"x = y", block=True)
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs" / "index.md").write_text("# T\n\nFine $a^2$, broken $\\notamacro{y}$.\n")
    (project / "mkdocs.yml").write_text(
        "site_name: t\n"
        "markdown_extensions:\n  - pymdownx.arithmatex:\n      generic: true\n"
        f"hooks:\n  - {ROOT / 'scripts' / 'mkdocs_hooks.py'}\n"
    )
    result = _build(tmp_path / "site", cwd=project)
    assert result.returncode != 0
    assert "index.md: the equation" in result.stderr and "notamacro" in result.stderr


# -------------------------------------------------------------------------- in a browser


def _probe(page: Path, measure: str, *args: str) -> dict:
    """Load a copy of ``page`` (beside it: the same relative links) with no network and
    return what the JavaScript expression ``measure`` gives once the page has loaded."""
    script = (
        '<script>window.addEventListener("load", () => document.body.setAttribute('
        f'"data-probe", JSON.stringify({measure})));</script>'
    )
    probe = page.with_name(".probe.html")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", script + "</body>"), encoding="utf-8")
    try:
        dom = _browser(OFFLINE, "--virtual-time-budget=10000", *args, "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[:2000]
    return json.loads(html.unescape(found[1]))


# After load: how many <math> elements there are and, for each fraction, whether the
# browser drew its numerator above its denominator (MathML layout; a browser without it
# lays the two side by side, as inline text); and whether the TeX annotations are hidden.
_MATHS = """{
  math: document.querySelectorAll("math").length,
  stacked: Array.from(document.querySelectorAll("mfrac")).map((f) => {
    const [top, bottom] = Array.from(f.children).map((c) => c.getBoundingClientRect());
    return top.bottom <= bottom.top + 1 && bottom.height > 0;
  }),
  hidden: Array.from(document.querySelectorAll("annotation")).every(
    (a) => a.getBoundingClientRect().width === 0),
}"""


@needs_browser
def test_the_equations_render_in_a_browser_with_no_network(site, tmp_path):
    page = site / "concepts" / "index.html"
    text = page.read_text(encoding="utf-8")
    maths = _probe(page, _MATHS)
    assert maths["math"] == text.count("<math ") == len(_equations(text)) >= 9
    assert len(maths["stacked"]) == text.count("<mfrac>") >= 4 and all(maths["stacked"])
    assert maths["hidden"]  # the TeX annotations are not drawn

    shot = tmp_path / "concepts.png"
    _browser(OFFLINE, "--window-size=1280,1400", f"--screenshot={shot}", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (1400, 1280, 3)
    assert pixels.reshape(-1, 3).std(axis=0).min() > 20  # drawn, not one colour
    dark = (pixels.sum(axis=2) < 200).mean()  # text and equations, in the page's dark ink
    assert 0.005 < dark < 0.3, dark


def test_the_home_figure_links_to_its_full_size_png(site):
    page = _Page((site / "index.html").read_text(encoding="utf-8"))
    figures = [
        attrs
        for tag, attrs in page.tags
        if tag == "img" and "figure-wide" in attrs.get("class", "")
    ]
    assert [f["src"] for f in figures] == ["images/methods.png"]
    assert "images/methods.png" in page.links("a", "href")  # click to enlarge
    assert (site / "images" / "methods.png").is_file()


@needs_browser
def test_the_home_figure_is_shown_near_its_full_size(site):
    """At 1280 px the home page (no side bars) gives the figure nearly its 1305 px, so its
    small labels stay legible; inside the column beside the navigation it had ~690 px."""
    size = _probe(
        site / "index.html",
        "(({width, height}) => ({width, height}))("
        'document.querySelector("img.figure-wide").getBoundingClientRect())',
        "--window-size=1280,1000",
    )
    assert 1100 <= size["width"] <= 1305, size
    assert abs(size["height"] / size["width"] - 1500 / 1305) < 0.01, size  # not distorted
