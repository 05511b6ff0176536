"""The pieces of a self-contained HTML page (``wideflat report``): escaped tables, Markdown
pipe tables, embedded PNG figures, preformatted text and the page around them.

Nothing here loads a file or a script from elsewhere: figures are ``data:`` URIs, the style
sheet and the one script are inline, so the page opens anywhere, offline, and can be mailed
as one file. The script checks on load that every figure decoded, records the count on
``<body data-plots="shown/total">`` and shows a warning when one did not (a damaged file).
"""

from __future__ import annotations

import base64
import html
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "cell",
    "esc",
    "figure",
    "kv_table",
    "markdown",
    "note",
    "page",
    "pre",
    "section",
    "table",
]

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
     margin-top: 2em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; max-height: 32em; overflow-y: auto; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; font-size: 0.85em; }
#warning { background: #fee; border: 1px solid #c00; padding: 0.5em; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute("data-plots", (imgs.length - bad.length) + "/" + imgs.length);
  if (bad.length) {
    var w = document.getElementById("warning");
    w.textContent = bad.length + " figure(s) could not be shown: the file may be damaged.";
    w.hidden = false;
  }
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cell(value: Any, digits: int = 4) -> str:
    """A table cell's text: numbers to ``digits`` significant digits, NaN/None as –, nested
    values as compact JSON.

    Example:
        >>> cell(0.123456), cell(float("nan")), cell([1, 2]), cell(True)
        ('0.1235', '–', '[1, 2]', 'True')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _td(value: Any) -> str:
    numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return f'<td class="n">{esc(cell(value))}</td>' if numeric else f"<td>{esc(cell(value))}</td>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, scroll: bool = False) -> str:
    """An HTML table (cells escaped; numbers right-aligned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    out = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{out}</div>' if scroll else out


def kv_table(mapping: Mapping[str, Any]) -> str:
    """A two-column table: field, value (a mapping value becomes a table inside the cell).

    Example:
        >>> kv_table({"a": 1, "b": {"c": None}}).count("<table>")
        2
    """
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>"
        + (kv_table(v) if isinstance(v, Mapping) and v else esc(cell(v)))
        + "</td></tr>"
        for k, v in mapping.items()
    )
    return f"<table><tbody>{rows}</tbody></table>"


def markdown(text: str) -> str:
    """Markdown as the studies write it: pipe tables become HTML tables, other non-empty lines
    paragraphs (escaped; no other Markdown is interpreted).

    Example:
        >>> markdown("| a | b |\\n|---|--:|\\n| 1 | x<y |\\n\\nnote")
        '<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>x&lt;y</td></tr></tbody></table><p>note</p>'
    """
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            out.append(table(rows[0], rows[1:]))  # cells are text: left-aligned
            rows.clear()

    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|") and s.endswith("|"):
            cells = [c.strip() for c in s[1:-1].split("|")]
            if not all(set(c) <= set("-: ") and c for c in cells):  # not the |---| rule
                rows.append(cells)
            continue
        flush()
        if s:
            out.append(f"<p>{esc(s)}</p>")
    flush()
    return "".join(out)


def figure(png: bytes, caption: str) -> str:
    """A PNG embedded as a ``data:`` URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def pre(text: str) -> str:
    """Preformatted text (fixed-width tables, JSON)."""
    return f"<pre>{esc(text)}</pre>"


def note(text: str) -> str:
    """A grey remark (e.g. why a figure is missing)."""
    return f'<p class="note">{esc(text)}</p>'


def section(title: str, *parts: str) -> str:
    """A titled section of the page (``parts`` are HTML)."""
    return f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    """The whole document: inline style, the figure check, the sections."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>"
        f'<body><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p>'
        '<p id="warning" hidden></p>' + "".join(sections) + "</body></html>\n"
    )
