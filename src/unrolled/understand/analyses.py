"""The analyses behind `unrolled saturation`, `ngram` and `match`, and the text they read.

Each takes a model and a text (or a file) and returns plain data, the result `--json` prints;
cli/understand.py reads the flags and prints the tables. `unrolled cells` is `report.cells`.

    read_text     a UTF-8 file, or its train / val / test part (80 / 10 / 10 by position)
    saturation    the fraction of steps each sigmoid gate is left- (< 0.1) or right-saturated (> 0.9)
    ngram         Kneser-Ney n-grams fitted on the train split, scored on the test split; with a
                  model, the model on the same characters and where each errs
    span_match    the LSTMVis query: units on across a span and off around it, and where else they fire
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from unrolled.cells import facts
from unrolled.errors import UserError
from unrolled.charlm.text import read_file, split_bounds
from unrolled.understand.features import guess_language
from unrolled.understand.ngram import bits_per_char, error_analysis, log_probs
from unrolled.understand.record import fit_to_vocabulary, record
from unrolled.understand.render import saturation_png
from unrolled.understand.report import sample_positions
from unrolled.understand.saturation import gate_saturation, summary
from unrolled.understand.search import match, select

SPLITS = ("all", "train", "val", "test")


def read_text(path, split: str = "all", max_chars: int | None = None) -> str:
    """A UTF-8 text file, or its train / val / test part (80 / 10 / 10 by position, as training
    splits it), optionally cut to its first max_chars characters."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    text = read_file(Path(path), suggest_byte_level=False)
    if split != "all":
        a, b = split_bounds(len(text))
        text = {"train": text[:a], "val": text[a:b], "test": text[b:]}[split]
    if max_chars is not None:
        if max_chars < 1:
            raise UserError(f"--max-chars must be a positive integer, got {max_chars}")
        text = text[:max_chars]
    if not text:
        raise UserError(f"{path} has no text{'' if split == 'all' else ' in its ' + split + ' split'}; "
                        "give a file with some text in it")
    return text


def saturation(model, text: str, png=None, sample: int | None = 200_000, what: str = "the model",
               name: str = "the text") -> list[dict]:
    """Per gate and layer, the mean fraction of steps a unit is left- (< 0.1) and right-saturated
    (> 0.9), and the fraction of units mostly shut or mostly open; with `png`, the scatter plot
    of Karpathy, Johnson and Fei-Fei (2015) drawn there."""
    gates = facts(model.rnn).sigmoid_gates
    if not gates:
        raise UserError(f"{what} is a vanilla RNN: it has no gates to measure")
    # Fractions over an evenly spaced sample: every gate of every step of a long text would
    # not fit in memory, and 200,000 steps pin a fraction down to about +-0.001.
    rec = record(model, text, keys=gates, probs=False, positions=sample_positions(len(text), sample),
                 warmup=256, name=name)
    sat = gate_saturation(rec)
    if png:
        saturation_png(sat, png, title=f"gate saturation over {rec.positions.size:,} steps of {len(text):,} characters")
    return summary(sat)


def ngram(train: str, test: str, orders: list[int], model=None, language: str = "auto", unknown: str = "error",
          name: str = "the test text") -> dict:
    """Kneser-Ney n-grams of the given orders (ascending) fitted on `train`, scored on `test` in
    bits and nats per character; with a model, the model on the same characters (`unknown`
    "error" or "replace": skipping would shift them against the n-grams') and the error analysis
    (p < 0.5) against the top order, by the kind of character."""
    if model is not None and unknown == "skip":  # the model's characters would no longer line up with the n-grams'
        raise UserError("ngram --model takes --unknown replace, not skip: skipping would shift the "
                        "model's characters against the n-grams'")
    chars = sorted(set(train) | set(test))
    index = {c: i for i, c in enumerate(chars)}
    to_ids = lambda s: np.fromiter((index[c] for c in s), dtype=np.int64, count=len(s))  # noqa: E731
    t0 = time.perf_counter()
    lp = log_probs(to_ids(train), to_ids(test), orders[-1], len(chars))  # (orders, M)
    seconds = time.perf_counter() - t0
    # The first character of the test text has no context under either model: leave it out.
    bpc = bits_per_char(lp[:, 1:])
    rows = [{"model": f"{n}-gram", "bits_per_char": float(bpc[n - 1]),
             "nats_per_char": float(bpc[n - 1] * math.log(2))} for n in orders]
    result = {"train_chars": len(train), "test_chars": len(test), "vocab": len(chars), "rows": rows,
              "ngram_seconds": seconds}
    if model is None:
        return result
    # The n-grams keep the text as it is; the model reads it in its own characters.
    test = fit_to_vocabulary(model, test, unknown, name, hint="remove them, or pass --unknown replace")
    # Each parallel stream first reads the 256 characters before it, as a reader would have.
    rec = record(model, test, keys=("h",), positions=[], probs=False, warmup=256, name=name)
    p_model = np.concatenate([[np.nan], np.exp(rec.logp_next[:-1])])  # (M,) p of each character
    m_bpc = -np.nanmean(np.log(p_model[1:])) / math.log(2)
    rnn = model.rnn
    rows.append({"model": f"{facts(rnn).name.upper()} {rnn.num_layers}x{rnn.hidden_size}",
                 "bits_per_char": float(m_bpc), "nats_per_char": float(m_bpc * math.log(2))})
    lang = guess_language(test) if language == "auto" else language
    result["errors"] = error_analysis(test, p_model, np.exp(lp[orders[-1] - 1]), language=lang)
    result["errors_against"] = f"{orders[-1]}-gram"
    return result


def span_match(model, text: str, start: int, end: int, threshold: float = 0.3, states=("h",), pad: int = 1,
               min_on: int | None = None, top: int = 10, name: str = "the text") -> dict:
    """The LSTMVis query: the units on (> threshold) across text[start:end] and off `pad`
    characters before and after it, then the other stretches where they are on together, best
    first (most selected units on, fewest other units on, longest)."""
    rec = record(model, text, keys=tuple(states), probs=False, warmup=256, name=name)
    values, names = rec.units(tuple(states))  # (N, units)
    units = select(values, start, end, threshold=threshold, pad_before=pad, pad_after=pad)
    matches = match(values, units, threshold=threshold, min_on=min_on, top=top) if units.size else []
    return {"span": [start, end], "text": text[start:end], "units": [names[u] for u in units],
            "matches": [{**m, "text": text[m["start"]:m["end"]]} for m in matches]}
