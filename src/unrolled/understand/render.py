"""Draw what was recorded: unit values and predictions over text, as HTML and PNG.

Colour: a value v is drawn on a diverging scale, blue for strongly negative, white for neutral,
red for strongly positive, with intensity |v| / scale (clipped to 1); the scale of a row is the
largest |v| it shows unless given. Predictions are coloured by the probability the model gave
to the character that really came, mapped to 2p - 1 on the same scale: red is a confident right
guess, white a coin toss (p = 0.5, the paper's error threshold), blue a miss; hovering a
character shows the model's top-5 guesses for it.

HTML is one self-contained file: inline CSS, no script, no external resource, every piece of
text escaped (`<`, `&` and quotes), so it opens offline and a text cannot inject markup. A
page is a `Page`, the document as a string that also shows itself in Jupyter (`_repr_html_`:
its body, the style scoped to it). PNG goes through matplotlib (a monospaced grid of characters on coloured cells).
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np

from unrolled.errors import UserError

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; line-height: 1.35;
        white-space: pre; tab-size: 8; border: 1px solid #ddd; padding: 0.5em; overflow-x: auto; }
.text span { border-radius: 1px; }
.nl { color: #bbb; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; font-size: 14px; }
th { background: #f4f4f4; }
.row-label { font-family: monospace; font-size: 12px; color: #555; margin-top: 0.8em; }
.legend span { display: inline-block; width: 2.2em; text-align: center; font-size: 11px; }
"""


def rgb(value: float, scale: float = 1.0) -> tuple[int, int, int]:
    """Blue (negative) through white (0) to red (positive), as 0..255 RGB."""
    a = 0.0 if not np.isfinite(value) or scale <= 0 else float(np.clip(value / scale, -1.0, 1.0))
    fade = int(round(255 * (1 - abs(a))))
    return (255, fade, fade) if a > 0 else (fade, fade, 255)


def _hex(c: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % c


def _scale(values: np.ndarray, scale: float | None) -> float:
    if scale is not None:
        return float(scale)
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def show_char(ch: str) -> str:
    """A character as it should appear in a hover or a table: whitespace made visible."""
    return {"\n": "\\n", "\t": "\\t", " ": "\u2423", "\r": "\\r"}.get(ch, ch)


def _spans(text: str, values: np.ndarray, scale: float, titles=None) -> str:
    parts = []
    for k, ch in enumerate(text):
        style = f' style="background:{_hex(rgb(values[k], scale))}"'
        title = f' title="{html.escape(titles[k], quote=True)}"' if titles is not None else ""
        if ch == "\n":
            parts.append(f'<span class="nl"{style}{title}>\u21b5</span>\n')
        else:
            parts.append(f"<span{style}{title}>{html.escape(ch, quote=True)}</span>")
    return "".join(parts)


def units_block(text: str, rows: list[tuple[str, np.ndarray]], scale: float | None = None) -> str:
    """HTML fragment: the text once per row, each character on its value's colour; a row is
    (label, values (len(text),)). Hovering a character shows the value."""
    out = []
    for label, values in rows:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(text),):
            raise ValueError(f"row {label!r} has {values.shape} values for {len(text)} characters")
        s = _scale(values, scale)
        titles = [f"{label} = {v:+.3f}" for v in values]
        out.append(f'<div class="row-label">{html.escape(label)} (scale \u00b1{s:.3g})</div>'
                   f'<div class="text">{_spans(text, values, s, titles)}</div>')
    return "\n".join(out)


def top_k(probs: np.ndarray, chars: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Per row of probs (K, V): the k likeliest characters with their probabilities."""
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (K, k)
    return [[(chars[j], float(probs[r, j])) for j in row] for r, row in enumerate(idx)]


def prediction_block(text: str, p_actual: np.ndarray, guesses: list | None) -> str:
    """HTML fragment: each character coloured by the probability the model gave it (2p - 1 on
    the diverging scale); hovering shows p and the top-5 guesses made for that position.
    p_actual (len(text),), NaN where there was no prediction; guesses[k] the top-5 for char k."""
    titles = []
    for k, ch in enumerate(text):
        p = p_actual[k]
        t = f"{show_char(ch)}: p = {p:.3f}" if np.isfinite(p) else f"{show_char(ch)}: no prediction"
        if guesses is not None and guesses[k]:
            t += "\n" + "\n".join(f"{show_char(c)}  {q:.3f}" for c, q in guesses[k])
        titles.append(t)
    values = 2 * np.asarray(p_actual, dtype=np.float64) - 1
    return f'<div class="text">{_spans(text, values, 1.0, titles)}</div>'


def page(title: str, body: str) -> Page:
    """A whole self-contained HTML document (a `Page`: a string that shows itself in Jupyter)."""
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
                f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
    return Page(document, body)


class Page(str):
    """A whole HTML document (it is the string itself) that also shows itself in Jupyter: there
    `_repr_html_` gives its body as a fragment whose styles apply inside it alone."""

    body: str = ""

    def __new__(cls, document: str, body: str):
        page_ = super().__new__(cls, document)
        page_.body = body
        return page_

    def __repr__(self) -> str:
        return f"<an HTML page of {len(self):,} characters>"

    def _repr_html_(self) -> str:
        return fragment(self.body)


def _scoped(css: str) -> str:
    """The page's style with every rule limited to the `.unrolled` element (and `body` turned
    into it), so a fragment in a notebook leaves the rest of the notebook as it was."""
    def scope(rule):
        selectors = [sel.strip() for sel in rule.group(1).split(",")]
        return ", ".join(".unrolled" if sel == "body" else f".unrolled {sel}" for sel in selectors) + " {"
    return re.sub(r"^([^{}\n]+?)\s*\{", scope, css, flags=re.M)


def fragment(body: str) -> str:
    """An HTML fragment for a notebook: `body` inside a <div class="unrolled"> with the scoped style."""
    return f'<div class="unrolled"><style>{_scoped(_STYLE)}</style>{body}</div>'


def signed(u: dict) -> str:
    """A ranked unit's score for reading: its strength (AUC of the unit or of its negation, or
    |r|) with the sign of the direction: -0.98 is a unit that is *low* where the feature holds."""
    return f"{'+' if u['sign'] > 0 else '-'}{u['strength']:.3f}"


def ranking_table(ranking: dict, runners_up: int = 2) -> str:
    """HTML table of a ranking (`search.rank_units`): per feature its metric, the share of
    positives, the best unit and `runners_up` more, each with its signed score."""
    shown = 1 + runners_up
    ordinals = ["best unit", "2nd", "3rd"] + [f"{k}th" for k in range(4, shown + 1)]
    head = "".join(f"<th>{o}</th><th>score</th>" for o in ordinals[:shown])
    rows = []
    for feature, entry in ranking.items():
        cells = "".join(f"<td>{html.escape(u['unit'])}</td><td>{signed(u)}</td>" for u in entry["best"][:shown])
        pos = f"{entry['positives']:.1%}" if entry["positives"] is not None else ""
        rows.append(f"<tr><td>{html.escape(feature)}</td><td>{entry['metric']}</td><td>{pos}</td>{cells}</tr>")
    return ("<table><tr><th>feature</th><th>metric</th><th>positives</th>" + head + "</tr>"
            + "".join(rows) + "</table>")


def legend() -> str:
    cells = "".join(f'<span style="background:{_hex(rgb(v))}">{v:+.1f}</span>' for v in np.linspace(-1, 1, 9))
    return f'<p class="legend">{cells} &nbsp;(value / scale)</p>'


def write_text(path, content: str) -> Path:
    """Write a file atomically (a temporary name, then a rename): nothing half-written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        if tmp.exists():
            tmp.unlink()
        raise UserError(f"cannot write {path}: {e.strerror or e}; check the directory exists and is writable") from None
    return path


def units_html(text: str, rows: list[tuple[str, np.ndarray]], path=None, title: str = "units",
               scale: float | None = None) -> Page:
    """A page of one or many units over a text (see `units_block`); written to `path` if given.
    In Jupyter the returned page shows itself."""
    doc = page(title, legend() + units_block(text, rows, scale))
    if path is not None:
        write_text(path, doc)
    return doc


# --- PNG ------------------------------------------------------------------------------------------
def _colormap():
    # matplotlib is imported where a PNG is drawn, not at the top: only the PNGs need it, and it
    # is slow to import for every command and page that does not draw one.
    from matplotlib.colors import LinearSegmentedColormap
    return LinearSegmentedColormap.from_list("unrolled_bwr", [(0, 0, 1), (1, 1, 1), (1, 0, 0)])


def _grid(text: str, values: np.ndarray, width: int):
    """Lay the text out in lines (tabs expanded, long lines cut at `width`): a (lines, width)
    array of values (NaN where there is no character) and the characters at each cell."""
    rows_v, rows_c, v_line, c_line = [], [], [], []
    for ch, v in zip(text, values):
        if ch == "\n":
            v_line.append(v)
            c_line.append("\u21b5")
            rows_v.append(v_line)
            rows_c.append(c_line)
            v_line, c_line = [], []
            continue
        cells = 8 - len(v_line) % 8 if ch == "\t" else 1
        v_line += [v] * cells
        c_line += [" "] * cells if ch == "\t" else [ch]
    if v_line:
        rows_v.append(v_line)
        rows_c.append(c_line)
    grid = np.full((len(rows_v), width), np.nan)
    chars = [[""] * width for _ in rows_v]
    for r, (vl, cl) in enumerate(zip(rows_v, rows_c)):
        n = min(width, len(vl))
        grid[r, :n] = vl[:n]
        chars[r][:n] = cl[:n]
    return grid, chars


def units_png(text: str, rows: list[tuple[str, np.ndarray]], path, width: int = 80,
              scale: float | None = None, dpi: int = 120, fontsize: float = 7.0) -> Path:
    """One panel per unit: the text on a grid, each character's cell coloured by the unit.

    Each line of text is one text object in a monospaced font whose advance (0.6 em) is the
    width of a cell, so the characters sit on their cells (drawing them one by one is slow)."""
    import matplotlib  # here, not at the top: see _colormap
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = [(label, *_grid(text, np.asarray(v, dtype=np.float64), width)) for label, v in rows]
    cell_w, cell_h, title_h = 0.6 * fontsize / 72, 1.3 * fontsize / 72, 0.25  # inches
    heights = [g.shape[0] * cell_h + title_h for _, g, _ in grids]
    fig = plt.figure(figsize=(width * cell_w + 0.2, sum(heights) + 0.1))
    cmap = _colormap()
    top = 1.0
    total = sum(heights) + 0.1
    for label, grid, chars in grids:
        h = grid.shape[0] * cell_h
        top -= title_h / total
        ax = fig.add_axes([0.1 / (width * cell_w + 0.2), top - h / total, width * cell_w / (width * cell_w + 0.2),
                           h / total])
        top -= h / total
        s = _scale(grid, scale)
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-s, vmax=s, aspect="auto",
                  interpolation="nearest", extent=(-0.5, width - 0.5, grid.shape[0] - 0.5, -0.5))
        for r, line in enumerate(chars):
            ax.text(-0.5, r, "".join(c or " " for c in line).rstrip(), ha="left", va="center",
                    family="DejaVu Sans Mono", fontsize=fontsize)
        ax.set_title(f"{label}  (scale \u00b1{s:.3g})", fontsize=8, loc="left", pad=2)
        ax.set_xlim(-0.5, width - 0.5)
        ax.axis("off")
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def saturation_png(sat: dict[str, dict], path, title: str = "gate saturation") -> Path:
    """The paper's scatter plot: per gate (one panel each), every unit at (fraction of steps
    left-saturated, fraction right-saturated), coloured by layer."""
    import matplotlib  # here, not at the top: see _colormap
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gates = list(dict.fromkeys(s["gate"] for s in sat.values()))
    if not gates:
        raise UserError("the recording has no sigmoid gates to measure (a vanilla RNN has none)")
    names = {"i": "input gate", "f": "forget gate", "o": "output gate", "r": "reset gate", "z": "update gate"}
    fig, axes = plt.subplots(1, len(gates), figsize=(3.3 * len(gates), 3.4), squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for ax, gate in zip(axes[0], gates):
        for s in sat.values():
            if s["gate"] == gate:
                ax.scatter(s["left"], s["right"], s=6, alpha=0.6, color=colours[s["layer"] % 5],
                           label=f"layer {s['layer']}")
        ax.plot([0, 1], [1, 0], color="#ccc", lw=0.8)  # left + right <= 1 for every unit
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("fraction left-saturated (< 0.1)")
        ax.set_ylabel("fraction right-saturated (> 0.9)")
        ax.set_title(names.get(gate, gate))
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
