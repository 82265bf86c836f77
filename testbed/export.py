"""Exports of a demo's timeline: an SVG picture and one self-contained HTML page.

Both work offline: no script, font or style sheet is fetched from anywhere.  The page
holds the timeline (one column per CPU), a legend, the finding, the explanation, the
command that replays the run, and the source lines of the kernel functions the
timeline shows, read from ``kernels/*.S`` through the image's line table; every
instruction in the timeline links to its source line.  As on the terminal, every kind
of row carries a marker, so neither export depends on colour.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from .asm import Image, Symbol
from .resources import kernels_dir
from .timeline import LEGEND, Fold, Kind, Row, Timeline

__all__ = ["FINDING_BG", "HEAD_BG", "Page", "SourceBlock", "html", "source_blocks", "svg",
           "table_html", "write_html", "write_svg"]


@dataclass(frozen=True)
class Page:
    title: str  # "testbed demo nosync-stale"
    summary: str
    story: str
    provenance: str  # how the schedule was found
    timeline: Timeline
    image: Image
    findings: Sequence[str]  # as printed
    target: str | None  # the oracle the demo shows, None: it must find nothing
    why: Sequence[str]
    replay: str  # the command that replays the run
    command: str  # the command that made the page
    functions: Sequence[str] = ()  # kernel functions to list besides those shown running


# One palette for the page and the picture: (text colour, background); markers carry
# the meaning, colours only help.
_COLOURS: dict[Kind, tuple[str, str]] = {
    Kind.INSN: ("#1b1b1b", ""),
    Kind.SITE: ("#1b1b1b", "#e8eefb"),
    Kind.STORE: ("#6b4e00", "#fff3c4"),
    Kind.MODEL: ("#00596b", ""),
    Kind.EXCEPTION: ("#7a1f7a", "#f6e6f6"),
    Kind.IPI: ("#1f3f99", ""),
    Kind.RECORD: ("#1d6b2a", "#e3f4e5"),
    Kind.NOTE: ("#1b1b1b", "#efefef"),
    Kind.HALT: ("#666666", ""),
    Kind.FINDING: ("#7d0000", "#f8d0d0"),
}
_STALE = ("#7d0000", "#fde2c8")
_FOLD = ("#666666", "#f4f4f4")
_HEAD = "#dde6f3"  # CPU column headers
FINDING_BG = _COLOURS[Kind.FINDING][1]  # the verdict banner and finding rows
HEAD_BG = _HEAD


def _colours(row: Row) -> tuple[str, str]:
    if row.kind is Kind.SITE and row.stale:
        return _STALE
    return _COLOURS[row.kind]


# ---------------------------------------------------------------------------- source

@dataclass(frozen=True)
class SourceBlock:
    """Consecutive source lines of one kernel file, covering one or more functions."""

    file: str  # "kernels/insn.S"
    path: str  # the file as linked (Symbol.file)
    names: tuple[str, ...]
    first: int  # line numbers, 1-based, inclusive
    lines: tuple[str, ...]


def _display(path: str) -> str:
    p = Path(path)
    try:
        return str(Path("kernels") / p.resolve().relative_to(kernels_dir().resolve()))
    except ValueError:
        return p.name


def _symbol(image: Image, name: str, addr: int) -> Symbol | None:
    line = image.line_of(addr)
    for s in image.symbols.values():
        if s.name == name and s.section == "text" and (line is None or s.file == line.file):
            return s
    return None


def _is_preamble(text: str) -> bool:
    t = text.strip()
    return t.startswith(("//", "/*", "*", ".global", ".globl", ".type", ".align",
                         ".p2align", ".balign"))


def source_blocks(image: Image, timeline: Timeline,
                  functions: Sequence[str] = ()) -> list[SourceBlock]:
    """The source of every function the timeline shows a row of, and of ``functions``,
    merged per file into blocks of consecutive lines, in the order the timeline first
    shows them."""
    wanted: list[tuple[str, int]] = []
    seen: set[str] = set()
    for r in timeline.rows():
        if r.kind in (Kind.INSN, Kind.SITE) and r.addr >= 0:
            for name in sorted({r.function, image.symbolize(r.addr).split("+", 1)[0]}):
                if name and name not in seen:
                    seen.add(name)
                    wanted.append((name, r.addr))
    for name in functions:
        if name not in seen and name in image.symbols:
            seen.add(name)
            wanted.append((name, image.addr(name)))
    texts: dict[str, list[str]] = {}
    spans: dict[str, list[tuple[int, int, str]]] = {}
    order: list[str] = []
    for name, addr in wanted:
        sym = _symbol(image, name, addr)
        if sym is None:
            continue
        if sym.file not in texts:
            try:
                texts[sym.file] = Path(sym.file).read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            order.append(sym.file)
        lines = texts[sym.file]
        start = sym.line
        while start > 1 and _is_preamble(lines[start - 2]):
            start -= 1  # the comment block and directives above the label
        later = [s.line for s in image.symbols.values()  # (a label at the same address,
                 if s.file == sym.file and s.section == "text" and s.line > sym.line
                 and s.addr > sym.addr]  # e.g. insn.S's read_ctr, is inside it)
        end = min(later) - 1 if later else len(lines)
        while end > sym.line and (not lines[end - 1].strip() or _is_preamble(lines[end - 1])):
            end -= 1  # what belongs to the next label
        spans.setdefault(sym.file, []).append((start, end, name))
    out: list[SourceBlock] = []
    for path in order:
        merged: list[tuple[int, int, tuple[str, ...]]] = []
        for start, end, name in sorted(spans[path]):
            if merged and start <= merged[-1][1] + 1:  # touching or overlapping
                first, last, names = merged[-1]
                merged[-1] = (first, max(last, end), (*names, name))
            else:
                merged.append((start, end, (name,)))
        for start, end, names in merged:
            out.append(SourceBlock(_display(path), path, names, start,
                                   tuple(texts[path][start - 1:end])))
    return out


def _anchor(file: str, line: int) -> str:
    return "L-" + "".join(c if c.isalnum() else "-" for c in file) + f"-{line}"


# ------------------------------------------------------------------------------ HTML

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #1b1b1b; background: #ffffff; max-width: 1500px; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
h2 { font-size: 17px; margin: 22px 0 8px 0; }
p { margin: 6px 0; max-width: 1000px; }
code, pre, .timeline td { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.verdict { padding: 10px 14px; margin: 14px 0; border: 2px solid #7d0000; max-width: 1100px; }
.verdict.finding { background: FINDING_BG; }
.verdict.clean { background: #dff3e2; border-color: #1d6b2a; }
.verdict .mk { font-weight: bold; margin-right: 8px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 8px 0; padding: 0;
          list-style: none; font-size: 13px; }
.legend li { max-width: 460px; }
.legend code { font-weight: bold; padding: 0 4px; }
table.timeline { border-collapse: separate; border-spacing: 2px 0; font-size: 12.5px; }
table.timeline th { text-align: left; padding: 6px 8px; position: sticky; top: 0; }
table.timeline th.cpu { background: HEAD_BG; min-width: 440px; font-size: 14px; }
table.timeline th.step { background: #ffffff; }
table.timeline td { padding: 1px 8px; white-space: pre; vertical-align: top; }
table.timeline td.step { color: #777777; text-align: right; }
td .mk { font-weight: bold; }
td .mark { font-weight: bold; }
td a { color: inherit; text-decoration: none; border-bottom: 1px dotted #999999; }
tr.fold td { color: #666666; background: #f4f4f4; font-style: italic; }
.source pre { background: #fafafa; border: 1px solid #dddddd; padding: 8px 0; overflow-x: auto;
              font-size: 12.5px; }
.source .ln { color: #999999; display: inline-block; width: 4em; text-align: right;
              padding-right: 1em; user-select: none; }
.source .ran { background: #e8eefb; }
.source .site { background: #fde2c8; font-weight: bold; }
.source span.line { display: block; }
.source span.line:target { outline: 2px solid #1f3f99; }
footer { margin-top: 28px; color: #666666; font-size: 13px; }
""".replace("FINDING_BG", FINDING_BG).replace("HEAD_BG", HEAD_BG)


def _kind_css() -> str:
    out = []
    for kind, (fg, bg) in _COLOURS.items():
        rule = f"color: {fg};" + (f" background: {bg};" if bg else "")
        out.append(f"td.k-{kind.name.lower()} {{ {rule} }}")
    out.append(f"td.stale {{ color: {_STALE[0]}; background: {_STALE[1]}; font-weight: bold; }}")
    return "\n".join(out)


def _e(text: str) -> str:
    return _html.escape(text, quote=True)


def _cell(row: Row, image: Image, linked: set[tuple[str, int]]) -> str:
    marker = f'<span class="mk">{_e(row.prefix)}</span> '
    if row.kind in (Kind.INSN, Kind.SITE):
        sym = _e(row.symbol)
        line = image.line_of(row.addr) if row.addr >= 0 else None
        if line is not None and (_display(line.file), line.line) in linked:
            sym = f'<a href="#{_anchor(_display(line.file), line.line)}">{sym}</a>'
        pad = " " * max(0, 24 - len(row.text))
        body = f"<code>{_e(row.text)}</code>{pad} {sym}"
    else:
        body = _e(row.text)
    if row.access:
        body += f'  <span class="access">{_e(row.access)}</span>'
    if row.mark:
        body += f'  <span class="mark">&lt;== {_e(row.mark)}</span>'
    return marker + body


def html(page: Page) -> str:
    """One self-contained HTML page."""
    tl, image = page.timeline, page.image
    blocks = source_blocks(image, tl, page.functions)
    linked = {(b.file, b.first + i) for b in blocks for i in range(len(b.lines))}
    ran: set[tuple[str, int]] = set()
    sites: set[tuple[str, int]] = set()
    for r in tl.rows():
        line = image.line_of(r.addr) if r.addr >= 0 else None
        if line is not None:
            (sites if r.kind is Kind.SITE else ran).add((_display(line.file), line.line))
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(page.title)}</title>",
        f"<style>{_CSS}\n{_kind_css()}\n</style>", "</head>", "<body>",
        f"<header><h1>{_e(page.title)}</h1><p><strong>{_e(page.summary)}</strong></p>"
        "</header>",
        f'<section class="story"><p>{_e(page.story)}</p><p>{_e(page.provenance)}</p>'
        f"<p>Replay it: <code>{_e(page.replay)}</code></p></section>",
    ]
    if page.findings:
        items = "".join(f"<p>{_e(f)}</p>" for f in page.findings)
        out.append(f'<section class="verdict finding" id="finding"><p><span class="mk">!!'
                   f"</span><strong>{_e(page.target or 'finding')}</strong></p>{items}"
                   "</section>")
    else:
        out.append('<section class="verdict clean" id="finding"><p><span class="mk">ok'
                   "</span><strong>No finding: every oracle passed on this run.</strong></p>"
                   "</section>")
    out.append('<h2>Legend</h2><ul class="legend">')
    for marker, label, meaning in LEGEND:
        shown = _e(marker) if marker else "&nbsp;&nbsp;"
        out.append(f"<li><code>{shown}</code> <strong>{_e(label)}</strong>: {_e(meaning)}</li>")
    out.append("</ul>")
    out.append('<h2>Timeline</h2><table class="timeline" id="timeline"><thead><tr>'
               '<th class="step">step</th>'
               + "".join(f'<th class="cpu" id="cpu{c}">CPU{c}</th>' for c in range(tl.ncpus))
               + "</tr></thead><tbody>")
    for item in tl.items:
        if isinstance(item, Fold):
            out.append(f'<tr class="fold"><td class="step">...</td>'
                       f'<td colspan="{tl.ncpus}">{_e(item.text())}</td></tr>')
            continue
        col = min(max(item.cpu, 0), tl.ncpus - 1)
        cls = f"k-{item.kind.name.lower()}" + (" stale" if item.stale else "")
        cells = []
        for c in range(tl.ncpus):
            if c == col:
                text = _cell(item, image, linked)
                if item.cpu < 0:
                    text = f'<span class="mk">{_e(item.prefix)}</span> [memory] {_e(item.text)}'
                cells.append(f'<td class="cell {cls}">{text}</td>')
            else:
                cells.append("<td></td>")
        out.append(f'<tr class="r-{item.kind.name.lower()}"><td class="step">{item.step}'
                   f'</td>{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    if page.why:
        out.append('<h2>Why</h2><section class="why">'
                   + "".join(f"<p>{_e(p)}</p>" for p in page.why) + "</section>")
    out.append('<h2>Kernel source</h2><section class="source"><p>The functions the '
               "timeline shows, from <code>kernels/</code>; lines the timeline shows "
               "running are shaded, patched sites in orange.</p>")
    for b in blocks:
        spans = []
        for i, text in enumerate(b.lines):
            n = b.first + i
            cls = ("line site" if (b.file, n) in sites else
                   "line ran" if (b.file, n) in ran else "line")
            spans.append(f'<span class="{cls}" id="{_anchor(b.file, n)}"><span class="ln">{n}'
                         f"</span>{_e(text.expandtabs(8)) or ' '}</span>")
        out.append(f"<h3>{_e(', '.join(b.names))} <small>({_e(b.file)}:{b.first})</small>"
                   f"</h3><pre>{''.join(spans)}</pre>")
    out.append("</section>")
    out.append(f"<footer>Made by <code>{_e(page.command)}</code>: a real run of the "
               "testbed, replayable with the command above.</footer>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def table_html(title: str, summary: str, header: Sequence[str],
               rows: Sequence[tuple[Sequence[str], str]], notes: Sequence[str],
               command: str) -> str:
    """A self-contained page in the same style holding one table (``rows``: the cells,
    already HTML, and a row class: "finding" shades it); for reports such as
    ``testbed ablate``'s."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{_e(title)}</title>",
           f"<style>{_CSS}\ntable.report {{ border-collapse: collapse; font-size: 13px; }}"
           "\ntable.report th, table.report td { border: 1px solid #cccccc; padding: 4px 8px;"
           " text-align: left; vertical-align: top; }\ntable.report tr.finding td "
           f"{{ background: {FINDING_BG}; }}\n</style>", "</head>", "<body>",
           f"<header><h1>{_e(title)}</h1><p><strong>{_e(summary)}</strong></p></header>",
           '<table class="report"><thead><tr>'
           + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for cells, cls in rows:
        out.append(f'<tr class="{cls}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    out += [f"<p>{_e(n)}</p>" for n in notes]
    out.append(f"<footer>Made by <code>{_e(command)}</code>.</footer>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def write_html(page: Page, path: Path) -> None:
    path.write_text(html(page), encoding="utf-8")


# ------------------------------------------------------------------------------- SVG

_CHAR = 7.4  # px per character of the 12px monospace font (an estimate; text is clipped)
_ROW = 17


def svg(page: Page, width: int = 60) -> str:
    """The timeline as an SVG picture: a column (a ``<g id="cpuN">``) per CPU."""
    tl = page.timeline
    step_w = 6 * _CHAR
    col_w = width * _CHAR
    longest = max(len(f"{m:<4}{label}: {meaning}") for m, label, meaning in LEGEND)
    total_w = max(step_w + col_w * tl.ncpus + 20, longest * _CHAR + 20)
    top = 58
    n = len(tl.items)
    legend_top = top + _ROW * (n + 1) + 16
    total_h = legend_top + _ROW * (len(LEGEND) + 1) + 10
    cols: list[list[str]] = [[] for _ in range(tl.ncpus)]
    wide: list[str] = []  # rows not in one CPU's column: folds, memory events
    steps: list[str] = []

    def text(x: float, y: float, s: str, fill: str, extra: str = "") -> str:
        return (f'<text x="{x:.1f}" y="{y:.1f}" fill="{fill}" xml:space="preserve"{extra}>'
                f"{escape(s)}</text>")

    for i, item in enumerate(tl.items):
        y = top + _ROW * (i + 1)
        if isinstance(item, Fold):
            fg, bg = _FOLD
            wide.append(f'<rect x="0" y="{y - 12}" width="{total_w:.1f}" height="{_ROW}" '
                        f'fill="{bg}"/>')
            wide.append(text(step_w + 4, y, item.text(), fg, ' font-style="italic"'))
            continue
        steps.append(text(step_w - 8, y, str(item.step), "#777777", ' text-anchor="end"'))
        fg, bg = _colours(item)
        col = min(max(item.cpu, 0), tl.ncpus - 1)
        x = step_w + col * col_w
        cell = item.cell() if item.cpu >= 0 else f"{item.prefix} [memory] {item.text}"
        if col < tl.ncpus - 1 and len(cell) >= width:
            cell = cell[:width - 1]
        group = cols[col] if item.cpu >= 0 else wide
        if bg:
            group.append(f'<rect x="{x:.1f}" y="{y - 12}" width="{col_w - 2:.1f}" '
                         f'height="{_ROW - 1}" fill="{bg}"/>')
        weight = ' font-weight="bold"' if item.kind is Kind.FINDING or item.stale else ""
        group.append(text(x + 4, y, cell, fg, weight))
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
        f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" xml:space="preserve" '
        'style="white-space: pre" '
        'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">',
        f"<title>{escape(page.title)}: {escape(page.summary)}</title>",
        f'<rect x="0" y="0" width="{total_w:.0f}" height="{total_h:.0f}" fill="#ffffff"/>',
        text(4, 18, f"{page.title}: {page.summary}", "#1b1b1b",
             ' font-weight="bold" font-size="14"'),
        text(4, 36, page.replay, "#555555"),
        '<g id="steps">' + text(step_w - 8, top, "step", "#1b1b1b", ' text-anchor="end"')
        + "".join(steps) + "</g>",
    ]
    for c in range(tl.ncpus):
        x = step_w + c * col_w
        head = (f'<rect x="{x:.1f}" y="{top - 14}" width="{col_w - 2:.1f}" height="{_ROW + 2}" '
                f'fill="{_HEAD}"/>' + text(x + 4, top, f"CPU{c}", "#1b1b1b",
                                           ' font-weight="bold" class="cpu-head"'))
        parts.append(f'<g id="cpu{c}" class="cpu-column">{head}{"".join(cols[c])}</g>')
    parts.append(f'<g id="wide">{"".join(wide)}</g>')
    legend = [text(4, legend_top, "Legend", "#1b1b1b", ' font-weight="bold"')]
    for i, (marker, label, meaning) in enumerate(LEGEND):
        legend.append(text(4, legend_top + _ROW * (i + 1),
                           f"{marker or '  ':<4}{label}: {meaning}", "#1b1b1b"))
    parts.append(f'<g id="legend">{"".join(legend)}</g>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_svg(page: Page, path: Path, width: int = 60) -> None:
    path.write_text(svg(page, width), encoding="utf-8")

