"""``index.html``: one self-contained page per ``xai explain`` or ``xai report`` run.

The page works offline and from the folder it sits in: no script at all, no style, font
or image from elsewhere (inline CSS, the system's fonts, and a Content-Security-Policy
that lets the browser load nothing but the run's own files), and every picture is a
relative link to a file the run wrote, so the folder can be moved, zipped or served as
it is. The generators are pure functions of the run's manifests (``explain_page``) or
summary (``report_page``); every piece of text is HTML-escaped and every link is
percent-encoded, since file names and class names may hold any character.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "PAGE",
    "explain_page",
    "report_page",
    "write_explain_page",
    "write_report_page",
]

#: The page's file name in the run's output folder.
PAGE = "index.html"

#: Overlays are shown this wide (CSS pixels); a click opens the file at full size.
THUMBNAIL = 224

# The browser may load the run's own files (same folder, any scheme the page is opened
# with) and inline CSS; nothing else: no script, font, frame or remote image.
_POLICY = "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'"

_CSS = f"""
:root {{ color-scheme: light; --ink: #1d2330; --mute: #5b6474; --line: #d9dde5;
  --card: #ffffff; --back: #f3f5f8; --warn: #9a3412; --warnback: #ffedd5; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: var(--back); }}
header {{ padding: 20px 28px 12px; background: var(--card);
  border-bottom: 1px solid var(--line); }}
h1 {{ margin: 0 0 4px; font-size: 22px; }}
h2 {{ margin: 0 0 2px; font-size: 18px; overflow-wrap: anywhere; }}
main {{ padding: 16px 28px 40px; }}
a {{ color: #1f5fbf; }}
.facts, .source, .files {{ color: var(--mute); margin: 2px 0; overflow-wrap: anywhere; }}
nav {{ margin-top: 8px; display: flex; flex-wrap: wrap; gap: 4px 14px; }}
section {{ background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 18px; margin: 0 0 16px; }}
.predicted {{ font-weight: 600; }}
.row {{ display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start;
  margin-top: 10px; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
th, td {{ padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left; }}
td.number, th.number {{ text-align: right; }}
caption {{ text-align: left; font-weight: 600; padding-bottom: 4px; }}
figure {{ margin: 0; width: {THUMBNAIL}px; }}
figure img {{ display: block; width: {THUMBNAIL}px; height: auto;
  border: 1px solid var(--line); background: #000; image-rendering: auto; }}
figcaption {{ font-size: 13px; margin-top: 4px; overflow-wrap: anywhere; }}
.method {{ font-weight: 600; }}
.warning {{ display: inline-block; color: var(--warn); background: var(--warnback);
  border-radius: 4px; padding: 0 5px; font-size: 12px; font-weight: 600; }}
.figure-wide img {{ display: block; width: auto; max-width: 100%; height: auto;
  border: 1px solid var(--line); }}
.figure-wide {{ width: auto; margin: 8px 0 18px; }}
"""


def _text(value: Any) -> str:
    """Any value as HTML text: every ``<``, ``>``, ``&`` and quote escaped."""
    return html.escape(str(value), quote=True)


def _href(*parts: str) -> str:
    """A relative link to a file of the run, each part percent-encoded (a ``:`` or ``/``
    in a file name stays a name, never a scheme or a folder), then HTML-escaped."""
    return _text("/".join(quote(str(part), safe="") for part in parts))


def _percent(value: Any, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{100 * number:.{digits}g}%"


def _number(value: Any, decimals: int = 3) -> str:
    try:
        return f"{float(value):.{decimals}f}"
    except (TypeError, ValueError):
        return "-"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _document(title: str, header: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_text(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header>\n{header}\n</header>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------- explain


def _top5(manifest: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_text(p.get('class', p.get('index', '?')))}</td>"
        f'<td class="number">{_text(p.get("index", ""))}</td>'
        f'<td class="number">{_percent(p.get("probability"))}</td></tr>'
        for p in manifest.get("prediction", [])
    )
    return (
        '<table class="top5"><caption>top-5</caption><tr><th>class</th>'
        '<th class="number">index</th><th class="number">probability</th></tr>'
        f"{rows}</table>"
    )


def _overlay(folder: str, image_name: str, entry: Mapping[str, Any], size: Any) -> str:
    method = str(entry.get("method", "?"))
    files = entry.get("files") or {}
    overlay = files.get("overlay")
    if entry.get("class_specific", True) and entry.get("target_class") is not None:
        explained = f"{_text(entry['target_class'])} ({_number(entry.get('score'), 2)})"
    elif entry.get("class_specific", True):
        explained = f"class {_text(entry.get('target', '?'))}"
    else:
        explained = "class-agnostic"
    notes = []
    if entry.get("layer"):
        notes.append(f"layer {_text(entry['layer'])}")
    relative = entry.get("raw_max_relative_to_top1")
    if entry.get("near_empty"):
        zero = _float(entry.get("raw_max")) <= 0.0
        share = f"{_percent(relative, 3)} of" if relative is not None else "next to"
        why = "the map is zero everywhere" if zero else f"its maximum is {share} the top-1 class's"
        notes.append(
            f'<span class="warning" title="{_text(why)}: the picture is scaled up">'
            f"{'all-zero' if zero else 'near-empty'} map</span>"
        )
    elif relative is not None and entry.get("class_specific", True):
        notes.append(f"map vs top-1 {_percent(relative, 3)}")
    links = " · ".join(
        f'<a href="{_href(folder, name)}">{_text(kind)}</a>'
        for kind, name in files.items()
        if kind != "overlay" and isinstance(name, str)
    )
    width, height = (size or (THUMBNAIL, THUMBNAIL))[:2]
    shown = max(1, round(THUMBNAIL * int(height) / max(1, int(width))))
    picture = (
        f'<a href="{_href(folder, overlay)}"><img src="{_href(folder, overlay)}" '
        f'width="{THUMBNAIL}" height="{shown}" '
        f'alt="{_text(method)} overlay of {_text(image_name)}"></a>'
        if isinstance(overlay, str)
        else ""
    )
    caption = f'<span class="method">{_text(method)}</span>: {explained}'
    extra = "<br>".join(notes)
    return (
        f"<figure>{picture}<figcaption>{caption}"
        f"{'<br>' + extra if extra else ''}"
        f"{'<br>' + links if links else ''}</figcaption></figure>"
    )


def _image_name(folder: str, manifest: Mapping[str, Any]) -> str:
    """The input's file name (its folder's name when the manifest does not say)."""
    path = str((manifest.get("image") or {}).get("path", folder))
    return Path(path).name or folder


def _image_section(number: int, folder: str, manifest: Mapping[str, Any]) -> str:
    image = manifest.get("image") or {}
    path = str(image.get("path", folder))
    name = _image_name(folder, manifest)
    prediction = manifest.get("prediction") or [{}]
    best = prediction[0]
    predicted = f"{_text(best.get('class', '?'))} {_percent(best.get('probability'))}"
    display = manifest.get("display") or {}
    size = (display.get("width", THUMBNAIL), display.get("height", THUMBNAIL))
    source = [_text(path)]
    if "height" in image and "width" in image:
        source.append(
            f"{_text(image['width'])}×{_text(image['height'])} {_text(image.get('mode', ''))}"
        )
    if manifest.get("input_size"):
        source.append("model input " + "×".join(_text(d) for d in manifest["input_size"]))
    figures = "".join(
        _overlay(folder, name, entry, size) for entry in manifest.get("explanations", [])
    )
    files = [f'<a href="{_href(folder, "manifest.json")}">manifest.json</a>']
    if isinstance(manifest.get("comparison"), str):
        files.insert(
            0, f'<a href="{_href(folder, manifest["comparison"])}">comparison of the methods</a>'
        )
    files.append(f'<a href="{_href(folder)}/">the folder</a>')
    return (
        f'<section id="image-{number}">\n'
        f'<h2><a href="{_href(folder)}/">{_text(name)}</a>: predicted '
        f'<span class="predicted">{predicted}</span></h2>\n'
        f'<p class="source">{" · ".join(source)}</p>\n'
        f'<div class="row">{_top5(manifest)}{figures}</div>\n'
        f'<p class="files">{" · ".join(files)}</p>\n</section>'
    )


def explain_page(manifests: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """The page of an ``xai explain`` run: per image, its prediction, top-5 and each
    method's overlay, with links to every file the run wrote.

    Args:
        manifests: ``(folder, manifest)`` per image, in the run's order: the image's
            folder beside the page and the ``manifest.json`` it holds.

    Returns:
        The HTML text (UTF-8), to be written as ``index.html`` beside the folders.
    """
    methods: dict[str, None] = {}
    for _, manifest in manifests:
        methods.update(
            dict.fromkeys(str(e.get("method")) for e in manifest.get("explanations", []))
        )
    count = len(manifests)
    summary = (
        f"{count} image{'s' if count != 1 else ''} × {len(methods)} "
        f"method{'s' if len(methods) != 1 else ''}"
    )
    facts = [_text(summary)]
    if manifests:
        first = manifests[0][1]
        model = first.get("model") or {}
        if model.get("spec"):
            facts.append(f"model {_text(model['spec'])}")
        if model.get("device"):
            facts.append(f"on {_text(model['device'])}")
        display = first.get("display") or {}
        if "colormap" in display:
            facts.append(
                f"colormap {_text(display['colormap'])}, alpha {_text(display.get('alpha'))}"
            )
        version = (first.get("versions") or {}).get("xai-toolkit")
        if version:
            facts.append(f"xai-toolkit {_text(version)}")
    nav = "".join(
        f'<a href="#image-{i}">{_text(_image_name(folder, manifest))}</a>'
        for i, (folder, manifest) in enumerate(manifests)
    )
    header = (
        f"<h1>xai explain: {_text(', '.join(methods) or 'no methods')}</h1>\n"
        f'<p class="facts">{" · ".join(facts)}</p>\n' + (f"<nav>{nav}</nav>" if count > 1 else "")
    )
    body = "\n".join(
        _image_section(i, folder, manifest) for i, (folder, manifest) in enumerate(manifests)
    )
    return _document(f"xai explain: {summary}", header, body)


# ---------------------------------------------------------------------------- report


def _class_table(summary: Mapping[str, Any]) -> str:
    labelled = any("accuracy" in entry for entry in summary.get("classes", []))
    head = (
        '<tr><th class="number">class</th><th>name</th>'
        '<th class="number">samples</th>'
        '<th class="number">predicted</th>'
        + ('<th class="number">accuracy</th>' if labelled else "")
        + '<th class="number">mean confidence</th></tr>'
    )
    rows = "".join(
        f'<tr><td class="number">{_text(entry.get("class", ""))}</td>'
        f"<td>{_text(entry.get('name', ''))}</td>"
        f'<td class="number">{_text(entry.get("count", ""))}</td>'
        f'<td class="number">{_text(entry.get("predicted", ""))}</td>'
        + (f'<td class="number">{_percent(entry.get("accuracy"))}</td>' if labelled else "")
        + f'<td class="number">{_number(entry.get("mean_confidence"))}</td></tr>'
        for entry in summary.get("classes", [])
    )
    grouped = _text(summary.get("counts_by", "true label"))
    return f"<table><caption>Per class (samples grouped by {grouped})</caption>{head}{rows}</table>"


_FIGURE_TITLES = {
    "class_means.png": "Mean maps per class",
    "confident.png": "Most and least confident samples per predicted class",
}


def report_page(summary: Mapping[str, Any], *, summary_file: str = "summary.json") -> str:
    """The page of an ``xai report`` run: its figures and its per-class table.

    Args:
        summary: the report's ``summary.json`` (``xai.viz.report.write_report``).
        summary_file: its file name beside the page, linked from it.

    Returns:
        The HTML text (UTF-8), to be written as ``index.html`` beside the figures.
    """
    methods = [str(m) for m in summary.get("methods", [])]
    facts = [
        f"{_text(summary.get('samples', '?'))} samples",
        f"methods {_text(', '.join(methods))}",
    ]
    if summary.get("accuracy") is not None:
        facts.append(f"accuracy {_percent(summary['accuracy'])}")
    if summary.get("mean_confidence") is not None:
        facts.append(
            f"mean confidence {_number(summary['mean_confidence'])} "
            f"({_text(summary.get('confidence', ''))})"
        )
    layers = summary.get("layers") or {}
    if layers:
        facts.append(
            "layers " + ", ".join(f"{_text(m)}: {_text(layer)}" for m, layer in layers.items())
        )
    if summary.get("images") not in (None, "shown"):
        facts.append(_text(summary["images"]))
    figures = "".join(
        f"<h2>{_text(_FIGURE_TITLES.get(str(name), name))}</h2>"
        f'<figure class="figure-wide"><a href="{_href(name)}"><img src="{_href(name)}" '
        f'alt="{_text(name)}"></a><figcaption><a href="{_href(name)}">{_text(name)}</a>'
        "</figcaption></figure>"
        for name in summary.get("figures", [])
        if isinstance(name, str)
    )
    header = (
        f"<h1>xai report: {_text(summary.get('store', ''))}</h1>\n"
        f'<p class="facts">{" · ".join(facts)}</p>\n'
        f'<p class="facts"><a href="{_href(summary_file)}">{_text(summary_file)}</a></p>'
    )
    body = f"<section>{figures}</section>\n<section>{_class_table(summary)}</section>"
    return _document(f"xai report: {summary.get('store', '')}", header, body)


# ----------------------------------------------------------------------------- files


def write_explain_page(out: str | os.PathLike[str], folders: Sequence[str]) -> Path:
    """Write ``out/index.html`` for the run whose image folders (under ``out``) are
    ``folders``, each holding its ``manifest.json``; atomically (whole or absent)."""
    from xai._files import atomic_write_text

    out = Path(out)
    manifests = [
        (folder, json.loads((out / folder / "manifest.json").read_text(encoding="utf-8")))
        for folder in folders
    ]
    return atomic_write_text(out / PAGE, explain_page(manifests))


def write_report_page(out: str | os.PathLike[str], summary_file: str = "summary.json") -> Path:
    """Write ``out/index.html`` for the report whose summary is ``out/summary_file``."""
    from xai._files import atomic_write_text

    out = Path(out)
    summary = json.loads((out / summary_file).read_text(encoding="utf-8"))
    return atomic_write_text(out / PAGE, report_page(summary, summary_file=summary_file))
