"""What the `cells`, `saturation` and `ngram` commands do, given their parsed flags.

Each reads the user's files (a UserError names any that is wrong), calls the library functions
of this package, prints a table and writes its files. cli.py only declares the flags.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from unrolled.errors import UserError
from unrolled.understand.record import fit_to_vocabulary

SPLITS = ("all", "train", "val", "test")


@contextmanager
def torch_threads(n: int | None):
    """Run with n torch threads, then restore. On a shared machine more threads than free cores
    make the many small products of the step loop spin against each other."""
    import torch
    if n is None:
        yield
        return
    if n < 1:
        raise UserError(f"--threads must be a positive integer, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_text(path, split: str = "all", max_chars: int | None = None) -> str:
    """A UTF-8 text file, or its train / val / test part (80 / 10 / 10 by position, as training
    splits it), optionally cut to its first max_chars characters."""
    from unrolled.text import read_file, split_bounds
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


def load_model(path):
    from unrolled.checkpoint import load
    return load(path)




def cells(checkpoint, file, features=None, top: int = 5, out="cells.html", png_dir=None, language="auto",
          states=None, sample=200_000, excerpt=2000, split="all", max_chars=None, save=None, threads=1,
          as_json=False, unknown="error") -> int:
    from unrolled.understand.report import cells as run, table_lines
    if top < 1:
        raise UserError(f"--top must be a positive integer, got {top}")
    if sample is not None and sample < 2:
        raise UserError(f"--sample must be at least 2, got {sample}")
    if excerpt < 1:
        raise UserError(f"--excerpt must be a positive integer, got {excerpt}")
    if out is not None and not Path(out).parent.exists():
        raise UserError(f"--out {out}: the folder {Path(out).parent} does not exist; create it first")
    with torch_threads(threads):
        model = load_model(checkpoint)
        text = fit_to_vocabulary(model, read_text(file, split, max_chars), unknown, str(file))
        result = run(model, text, features=features, language=language, top=top,
                     states=tuple(states.split(",")) if states else None, sample=sample, excerpt=excerpt,
                     html=out, png_dir=png_dir, save_to=save, name=str(file))
    if as_json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['chars']:,} characters of {file}" + (f" ({split} split)" if split != "all" else "")
          + f", {result['scored_chars']:,} scored, {result['units']} units, language {result['language']}, "
          f"{result['bits_per_char']:.3f} bits/char")
    print("\n".join(table_lines(result)))
    sec = result["seconds"]
    print(f"record {sec['record']:.1f}s, features {sec['features']:.1f}s, search {sec['search']:.1f}s, "
          f"drawing {sec['render']:.1f}s, total {sec['total']:.1f}s")
    if result["html"]:
        print(f"wrote {result['html']}")
    for p in result["pngs"]:
        print(f"wrote {p}")
    return 0


def saturation(checkpoint, file, png="saturation.png", split="all", max_chars=None, threads=1,
               as_json=False, sample=200_000, unknown="error") -> int:
    from unrolled.understand.record import SIGMOID_GATES, record
    from unrolled.understand.render import saturation_png
    from unrolled.understand.saturation import gate_saturation, summary
    with torch_threads(threads):
        model = load_model(checkpoint)
        text = fit_to_vocabulary(model, read_text(file, split, max_chars), unknown, str(file))
        gates = SIGMOID_GATES.get(type(model.rnn).__name__.lower(), ())
        if not gates:
            raise UserError(f"{checkpoint} is a vanilla RNN: it has no gates to measure")
        # Fractions over an evenly spaced sample: every gate of every step of a long text would
        # not fit in memory, and 200,000 steps pin a fraction down to about +-0.001.
        from unrolled.understand.report import sample_positions
        rec = record(model, text, keys=gates, probs=False, positions=sample_positions(len(text), sample),
                     warmup=256, name=str(file))
    sat = gate_saturation(rec)
    rows = summary(sat)
    if png:
        saturation_png(sat, png, title=f"gate saturation over {rec.positions.size:,} steps of {len(text):,} characters")
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'gate':<13} {'layer':>5} {'left <0.1':>10} {'right >0.9':>11} {'units mostly shut':>18} {'mostly open':>12}")
    for r in rows:
        print(f"{r['gate']:<13} {r['layer']:>5} {r['mean_left']:>10.3f} {r['mean_right']:>11.3f} "
              f"{r['units_mostly_shut']:>18.3f} {r['units_mostly_open']:>12.3f}")
    if png:
        print(f"wrote {png}")
    return 0


def ngram(file, orders="1,2,3,5,10,20", checkpoint=None, vocab_from=None, max_chars=None, language="auto",
          threads=1, as_json=False, unknown="error") -> int:
    """Kneser-Ney n-grams fitted on the train split of `file`, scored on its test split; with a
    checkpoint, the model on the same test split and the error analysis against the top order."""
    from unrolled.understand.features import guess_language
    from unrolled.understand.ngram import bits_per_char, error_analysis, log_probs
    try:
        wanted = sorted({int(x) for x in str(orders).split(",")})
    except ValueError:
        raise UserError(f"--orders must be a comma-separated list of integers, got {orders!r}") from None
    if not wanted or wanted[0] < 1 or wanted[-1] > 20:
        raise UserError(f"--orders must lie in 1..20, got {orders!r}")
    train = read_text(file, "train", max_chars)
    test = read_text(file, "test", max_chars)
    chars = sorted(set(train) | set(test))
    index = {c: i for i, c in enumerate(chars)}
    to_ids = lambda s: np.fromiter((index[c] for c in s), dtype=np.int64, count=len(s))  # noqa: E731
    t0 = time.perf_counter()
    lp = log_probs(to_ids(train), to_ids(test), wanted[-1], len(chars))  # (orders, M)
    seconds = time.perf_counter() - t0
    # The first character of the test text has no context under either model: leave it out.
    bpc = bits_per_char(lp[:, 1:])
    rows = [{"model": f"{n}-gram", "bits_per_char": float(bpc[n - 1]),
             "nats_per_char": float(bpc[n - 1] * math.log(2))} for n in wanted]
    result = {"train_chars": len(train), "test_chars": len(test), "vocab": len(chars), "rows": rows,
              "ngram_seconds": seconds}
    if checkpoint is not None:
        from unrolled.understand.record import record
        with torch_threads(threads):
            model = load_model(checkpoint)
            if unknown == "skip":  # the model's characters would no longer line up with the n-grams'
                raise UserError("ngram --model takes --unknown replace, not skip: skipping would shift the "
                                "model's characters against the n-grams'")
            test = fit_to_vocabulary(model, test, unknown, f"the test split of {file}",
                                     hint="remove them, or pass --unknown replace")
            # Each parallel stream first reads the 256 characters before it, as a reader would have.
            rec = record(model, test, keys=("h",), positions=[], probs=False, warmup=256,
                         name=f"the test split of {file}")
        p_model = np.concatenate([[np.nan], np.exp(rec.logp_next[:-1])])
        m_bpc = -np.nanmean(np.log(p_model[1:])) / math.log(2)
        rows.append({"model": f"{type(model.rnn).__name__} {model.rnn.num_layers}x{model.rnn.hidden_size}",
                     "bits_per_char": float(m_bpc), "nats_per_char": float(m_bpc * math.log(2))})
        lang = guess_language(test) if language == "auto" else language
        result["errors"] = error_analysis(test, p_model, np.exp(lp[wanted[-1] - 1]), language=lang)
        result["errors_against"] = f"{wanted[-1]}-gram"
    if as_json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"train {len(train):,} characters, test {len(test):,}, vocabulary {len(chars)}; "
          f"Kneser-Ney up to order {wanted[-1]} in {seconds:.1f}s")
    print(f"{'model':<16} {'bits/char':>9} {'nats/char':>9}")
    for r in rows:
        print(f"{r['model']:<16} {r['bits_per_char']:>9.3f} {r['nats_per_char']:>9.3f}")
    if "errors" in result:
        print(f"\nerrors (p < 0.5) of the model and of the {result['errors_against']}, by the kind of character predicted:")
        print(f"{'kind':<38} {'count':>8} {'model':>7} {'n-gram':>7} {'only model right':>17} {'only n-gram right':>18}")
        for r in result["errors"]:
            print(f"{r['kind']:<38} {r['count']:>8,} {r['model_errors']:>7.3f} {r['ngram_errors']:>7.3f} "
                  f"{r['model_only_right']:>17.3f} {r['ngram_only_right']:>18.3f}")
    return 0


def select_match(checkpoint, file, span: str, threshold: float = 0.3, states: str = "h", pad: int = 1,
                 min_on: int | None = None, top: int = 10, split="all", max_chars=None, threads=1,
                 as_json=False, unknown="error") -> int:
    """The LSTMVis query on a text: the units on across the span START:END and off around it,
    then the other stretches where they fire together."""
    from unrolled.understand.record import record
    from unrolled.understand.render import show_char
    from unrolled.understand.search import match, select
    try:
        a, b = (int(x) for x in span.split(":"))
    except ValueError:
        raise UserError(f"--span must be START:END in characters, like 120:140, got {span!r}") from None
    with torch_threads(threads):
        model = load_model(checkpoint)
        text = fit_to_vocabulary(model, read_text(file, split, max_chars), unknown, str(file))
        if not 0 <= a < b <= len(text):
            raise UserError(f"--span {span} must lie within the text's 0:{len(text)} and be non-empty")
        rec = record(model, text, keys=tuple(states.split(",")), probs=False, warmup=256, name=str(file))
    values, names = rec.units(tuple(states.split(",")))
    units = select(values, a, b, threshold=threshold, pad_before=pad, pad_after=pad)
    matches = match(values, units, threshold=threshold, min_on=min_on, top=top) if units.size else []
    snippet = lambda i, j: "".join(show_char(c) if c in "\n\t" else c for c in text[i:j])  # noqa: E731
    result = {"span": [a, b], "text": text[a:b], "units": [names[u] for u in units], "matches": [
        {**m, "text": text[m["start"]:m["end"]]} for m in matches]}
    if as_json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"selected {snippet(a, b)!r} ({a}:{b}); {len(units)} unit(s) on across it and off around it "
          f"(threshold {threshold}): {', '.join(result['units']) or 'none'}")
    for m in matches:
        ctx = snippet(max(0, m["start"] - 15), m["start"]) + "[" + snippet(m["start"], m["end"]) + "]" + \
            snippet(m["end"], m["end"] + 15)
        print(f"{m['start']:>9}:{m['end']:<9} on {m['intersection']}/{len(units)}, union {m['union']:>3}  {ctx}")
    return 0
