"""The interpretable-cell search of one model on one text, end to end (`unrolled cells`).

1) record the model over the text (parallel streams, carried state), keeping the states of a
   sample of characters for scoring plus one contiguous excerpt for the pictures;
2) label every character with each feature (features.py);
3) score every unit against every feature and rank them (search.py);
4) draw the best units of each feature over the excerpt, and the model's predictions with their
   top-5 guesses, in one self-contained HTML page (and PNGs when asked).

`cells` returns plain data (a dict that shows the HTML report in Jupyter); the CLI prints it
and the HTML is written beside.
"""
from __future__ import annotations

import time
from html import escape
from pathlib import Path

import numpy as np

from unrolled.cells import facts
from unrolled.errors import UserError
from unrolled.understand import features as feats
from unrolled.understand import render
from unrolled.understand.record import record, save_recording
from unrolled.understand.search import rank_units

signed = render.signed  # a ranked unit's score as the tables print it (the web viewer uses it too)


class CellsReport(dict):
    """What `cells` returns: plain data (a dict, as --json prints it) that shows its HTML report
    in Jupyter (the page `--html` writes: the table, the best units and the predictions)."""

    page: str = ""

    def _repr_html_(self) -> str:
        return render.fragment(self.page.body) if isinstance(self.page, render.Page) else ""


def excerpt_bounds(text: str, length: int, at: float = 0.5) -> tuple[int, int]:
    """A span of about `length` characters starting at a line start near fraction `at`."""
    N = len(text)
    if N <= length:
        return 0, N
    a = int((N - length) * at)
    nl = text.rfind("\n", 0, a)
    a = nl + 1 if nl >= 0 else 0
    b = min(N, a + length)
    nl = text.rfind("\n", a, b)
    return a, (nl + 1 if nl > a else b)


def sample_positions(n: int, k: int | None) -> np.ndarray:
    """k evenly spaced characters of n (all of them when k is None or k >= n)."""
    if not k or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).astype(np.int64))


def cells(model, text: str, features=None, language: str = "auto", top: int = 5, states=None,
          sample: int | None = 200_000, excerpt: int = 2000, html=None, png_dir=None,
          save_to=None, shown: int = 3, warmup: int = 256, name: str = "the text") -> dict:
    """Find the units of `model` that track features of `text`. Returns

        {"ranking": {feature: {"metric", "positives", "best": [{"unit", "score", "sign"}, ...]}},
         "kinds": {feature: "binary" | "number"}, "language": ..., "chars": N,
         "scored_chars": n, "bits_per_char": ..., "excerpt": [a, b], "seconds": {...},
         "html": path or None, "pngs": [paths]}

    states: quantities to search ("h", "c", ...; default h and c for an LSTM, h otherwise);
    sample: characters scored (evenly spaced); excerpt: characters drawn; shown: best units
    drawn per feature; warmup: characters each parallel stream reads before its start."""
    seconds = {}
    t0 = time.perf_counter()
    if states is None:
        states = facts(model.rnn).carries  # the carried state: h and c for an LSTM, h otherwise
    language = feats.guess_language(text) if language == "auto" else language
    N = len(text)
    scored = sample_positions(N, sample)
    a, b = excerpt_bounds(text, excerpt)
    keep = np.union1d(scored, np.arange(max(0, a - 1), b))  # a - 1: the prediction of the excerpt's first character
    rec = record(model, text, keys=states, positions=keep, warmup=warmup, name=name)
    seconds["record"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    labels = feats.compute(text, features, language)
    seconds["features"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    values, names = rec.units(states)  # (K, U)
    at_scored = np.searchsorted(keep, scored)
    ranking = rank_units(values[at_scored], names, {k: v[scored] for k, v in labels.items()}, top=top)
    seconds["search"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    out = {"ranking": ranking, "kinds": feats.kinds(labels), "language": language, "chars": N,
           "scored_chars": int(scored.size), "bits_per_char": rec.bits_per_char(), "excerpt": [a, b],
           "units": len(names), "html": None, "pngs": []}
    at_excerpt = np.searchsorted(keep, np.arange(a, b))
    out = CellsReport(out)
    out.page = report_html(text[a:b], values[at_excerpt], names, labels, ranking, rec, at_excerpt, a, shown, out)
    if html is not None:
        out["html"] = str(render.write_text(html, out.page))
    if png_dir is not None:
        png_dir = Path(png_dir)
        try:
            png_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot make the folder {png_dir} for the PNGs: {e.strerror or e}") from None
        lines = text[a:b]
        for feature, entry in ranking.items():
            if not entry["best"]:
                continue
            best = entry["best"][0]
            rows = [(f"{feature} (the feature)", labels[feature][a:b].astype(np.float64)),
                    (f"{best['unit']}  {entry['metric']} {signed(best)}",
                     values[at_excerpt, best["index"]])]
            out["pngs"].append(str(render.units_png(lines, rows, png_dir / f"{feature}.png")))
    if save_to is not None:
        save_recording(rec, save_to)
    seconds["render"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    out["seconds"] = seconds
    return out


def report_html(excerpt: str, values: np.ndarray, names: list[str], labels: dict, ranking: dict,
                rec, at_excerpt: np.ndarray, a: int, shown: int, info: dict) -> render.Page:
    """The HTML page of a search: the table, then per feature its labels and best units over the
    excerpt, then the model's predictions on the excerpt with top-5 guesses on hover."""
    b = a + len(excerpt)
    table = render.ranking_table(ranking)
    parts = [f"<p>{info['chars']:,} characters, {info['scored_chars']:,} scored, {info['units']} units "
             f"({escape(', '.join(sorted({n.split(':')[0] for n in names})))}); language {info['language']}; "
             f"the model's bits per character on this text: {info['bits_per_char']:.3f}.</p>",
             table, render.legend()]
    for feature, entry in ranking.items():
        if not entry["best"]:
            continue
        lab = labels[feature][a:b].astype(np.float64)
        row_list = [(f"{feature} (the feature itself)", lab)]
        row_list += [(f"{u['unit']}  {entry['metric']} {signed(u)}", values[:, u["index"]])
                     for u in entry["best"][:shown]]
        parts.append(f"<h2>{escape(feature)}</h2>" + render.units_block(excerpt, row_list))
    # predictions: p of each character under the step before it, with that step's top-5
    if rec.probs is not None:
        g = np.arange(a, b)  # character g was predicted at step g - 1
        p_actual = rec.p_of_chars(a, b)
        prev = np.searchsorted(rec.positions, np.maximum(g - 1, 0))  # kept: see `cells`
        tops = render.top_k(rec.probs[prev], rec.chars, 5)
        guesses = [None if gi == 0 else t for gi, t in zip(g, tops)]
        parts.append("<h2>predictions</h2><p>Each character on the probability the model gave it "
                     "(red: confident and right, white: p = 0.5, blue: a miss); hover for its top-5 "
                     "guesses.</p>" + render.prediction_block(excerpt, p_actual, guesses))
    return render.page("unrolled cells", "\n".join(parts))


def table_lines(result: dict) -> list[str]:
    """The ranking as aligned text lines, for the terminal."""
    lines = [f"{'feature':<18} {'metric':<6} {'best unit':<10} {'score':>7}   runners-up   "
             "(sign: + high where the feature holds, - low)"]
    for feature, entry in result["ranking"].items():
        best = entry["best"]
        if not best:
            lines.append(f"{feature:<18} {entry['metric']:<6} (the feature is constant on this text)")
            continue
        rest = ", ".join(f"{u['unit']} {signed(u)}" for u in best[1:])
        lines.append(f"{feature:<18} {entry['metric']:<6} {best[0]['unit']:<10} {signed(best[0]):>7}   {rest}")
    return lines
