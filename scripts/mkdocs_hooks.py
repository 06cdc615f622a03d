"""MkDocs hooks: the API page's list of methods comes from the registry, and every
equation is rendered to MathML when the site is built, so the site needs no network.

A line ``<!-- methods from the registry -->`` in a page becomes one mkdocstrings
``::: module.Class`` entry per registered method, in the registry's order, so a new
method reaches the API page without an edit there.

``pymdownx.arithmatex`` (generic mode) leaves ``$...$`` as ``\\(...\\)`` in a
``<span class="arithmatex">`` and ``$$...$$`` as ``\\[...\\]`` in a
``<div class="arithmatex">``. Each one is converted by ``latex2mathml`` into a
``<math>`` element (``display="block"`` for display maths) that browsers render
natively (MathML Core), with the TeX kept as an ``application/x-tex`` annotation. An
equation that does not convert, or that leaves a macro unconverted, fails the build
with the page, the TeX and the fix: raw TeX never reaches the site silently.
"""

from __future__ import annotations

import html
import re
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from mkdocs.exceptions import PluginError

MARKER = "<!-- methods from the registry -->"

# An arithmatex element: its tag, then its (HTML-escaped) text, delimiters included.
ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)

# TeX that latex2mathml 3.81 does not know, written with what it does know.
MACROS = {r"\arg": r"\operatorname{arg}"}

# Symbols latex2mathml writes with a character fonts rarely have, or as an identifier:
# \setminus is U+29F5 in an <mi>; set minus is the operator U+2216 (in every maths font).
SYMBOLS = {"\u29f5": ("mo", "\u2216")}

# Bars written as absolute values and norms: TeX sets them tight, a browser would space
# them as infix operators.
BARS = {"|", "\u2016"}

# MathML Core renders only mathvariant="normal": the other styles latex2mathml writes
# (\mathbb, \mathbf) become the letters of Unicode's Mathematical Alphanumeric Symbols.
# Per style: first code point of A-Z, of a-z, of 0-9, and the letters encoded elsewhere.
STYLES = {
    "bold": (0x1D400, 0x1D41A, 0x1D7CE, {}),
    "double-struck": (
        0x1D538,
        0x1D552,
        0x1D7D8,
        {
            "C": "\u2102",
            "H": "\u210d",
            "N": "\u2115",
            "P": "\u2119",
            "Q": "\u211a",
            "R": "\u211d",
            "Z": "\u2124",
        },
    ),
}


def _expand(tex: str) -> str:
    """``tex`` with every macro of ``MACROS`` (a whole control word) replaced."""
    for name in sorted(MACROS, key=len, reverse=True):
        replacement = MACROS[name]
        tex = re.sub(rf"{re.escape(name)}(?![A-Za-z])", lambda _, r=replacement: r, tex)
    return tex


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from xai import registry

    entries = [
        f"::: {info.target.replace(':', '.')}"
        for info in (registry.get(name) for name in registry.methods())
    ]
    return markdown.replace(MARKER, "\n\n".join(entries))


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    """Every arithmatex equation of the page, as MathML."""

    def replace(match: re.Match[str]) -> str:
        tag, text = match.group(1), match.group(2)
        try:
            mathml = tex_to_mathml(text, block=tag == "div")
        except ValueError as error:
            raise PluginError(
                f"{page.file.src_uri}: the equation {text.strip()!r} cannot be rendered to "
                f"MathML ({error}); rewrite it with macros latex2mathml knows, or map the "
                "macro in MACROS in scripts/mkdocs_hooks.py (an equation of the API page "
                "comes from a docstring)"
            ) from error
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return ARITHMATEX.sub(replace, content)


def tex_to_mathml(text: str, *, block: bool) -> str:
    """One arithmatex element's text (``\\(...\\)`` or ``\\[...\\]``, HTML-escaped) as a
    ``<math>`` element; ``ValueError`` if it is not delimited TeX that converts fully."""
    from latex2mathml.converter import convert_to_element

    tex = html.unescape(text).strip()
    opening, closing = (r"\[", r"\]") if block else (r"\(", r"\)")
    if not (tex.startswith(opening) and tex.endswith(closing)):
        raise ValueError(f"expected TeX between {opening} and {closing}, got {tex!r}")
    tex = tex[len(opening) : -len(closing)].strip()
    if not tex:
        raise ValueError("the equation is empty")
    try:
        math = convert_to_element(_expand(tex), display="block" if block else "inline")
    except Exception as error:  # latex2mathml's own errors derive from Exception only
        raise ValueError(f"latex2mathml: {type(error).__name__}: {error}") from error
    # latex2mathml writes symbols as character references ("&#x03B1;") in the text and
    # would unescape its whole output, "<" included: resolve them here, element by element,
    # and let ElementTree escape what must be.
    # A macro it does not know, it leaves as its name ("\\foo") in the text.
    for element in math.iter():
        if element.text and "\\" in element.text:
            raise ValueError(f"the macro {element.text!r} is not known to latex2mathml")
        element.text = element.text and html.unescape(element.text)
        element.tail = element.tail and html.unescape(element.tail)
        element.attrib = {key: html.unescape(value) for key, value in element.attrib.items()}
        style = element.attrib.get("mathvariant")
        if style in STYLES and element.text:
            element.text = "".join(_styled(char, style) for char in element.text)
            del element.attrib["mathvariant"]
        if element.text in SYMBOLS:
            element.tag, element.text = SYMBOLS[element.text]
        if element.tag == "mo" and element.text in BARS:
            element.attrib.update(lspace="0", rspace="0")  # |S|, ||x||: no operator spacing
    rows = list(math)
    semantics = Element("semantics")
    semantics.extend(rows if len(rows) == 1 else [_row(rows)])
    SubElement(semantics, "annotation", encoding="application/x-tex").text = tex
    for row in rows:
        math.remove(row)
    math.append(semantics)
    return tostring(math, encoding="unicode")


def _styled(char: str, style: str) -> str:
    upper, lower, digit, elsewhere = STYLES[style]
    if char in elsewhere:
        return elsewhere[char]
    for first, start in (("A", upper), ("a", lower), ("0", digit)):
        offset = ord(char) - ord(first)
        if 0 <= offset < (10 if first == "0" else 26):
            return chr(start + offset)
    return char


def _row(children: list[Element]) -> Element:
    row = Element("mrow")
    row.extend(children)
    return row
