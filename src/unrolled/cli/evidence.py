"""`unrolled intervene`, `attribute`, `span`, `probe` and `emergence`: evidence that a network
uses what it tracks, and when it learnt to.

Each command reads its flags, loads the model and the text, makes one call into
`unrolled.understand` (intervene, attribute, probe) and prints the result as a table (or as JSON
with --json). docs/understanding.md explains what each number means.
"""
from __future__ import annotations

from unrolled import threads
from unrolled.cli.understand import _common_flags, _model_and_text, _print_json
from unrolled.errors import UserError
from unrolled.understand import analyses
from unrolled.understand.attribute import attribute, memory_span
from unrolled.understand.emergence import emergence, emergence_png
from unrolled.understand.intervene import intervene
from unrolled.understand.probe import probe
from unrolled.understand.render import show_char


def _span(text: str | None):
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"--span must be START:END in characters, like 120:140, got {text!r}") from None
    return a, b


def _show(s: str) -> str:
    return "".join(show_char(c) if c in "\n\t" else c for c in s)


# --- intervene ----------------------------------------------------------------------------------
def add_intervene(sub) -> None:
    p = sub.add_parser(
        "intervene", help="hold a unit (clamp, zero or mean) and measure what the model's predictions lose",
        description="Run the model over the text with one unit held (clamped to a value, set to zero, or to its "
                    "mean), over every character or a span; report the change in bits per character overall and "
                    "inside and outside each yes/no feature, and the same intervention on N random units of the "
                    "same layer and kind (the unit's percentile among them).")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read (ideally text the model never trained on)")
    p.add_argument("--unit", required=True, metavar="UNIT", help="the unit, named as `unrolled cells` names it: c1:97, h0:12")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--clamp", type=float, default=None, metavar="V", help="hold the unit at V")
    how.add_argument("--ablate", choices=("zero", "mean"), default=None,
                     help="hold the unit at zero, or at its mean over the text")
    p.add_argument("--span", default=None, metavar="START:END", help="hold it only over these characters")
    p.add_argument("--controls", type=int, default=20, metavar="N",
                   help="random units of the same layer and kind held the same way (default 20; 0 for none)")
    p.add_argument("--seed", type=int, default=0, help="which random control units (default 0)")
    p.add_argument("--language", default="auto", choices=["auto", "c", "python", "prose"],
                   help="how to find comments and strings (default: guessed from the text)")
    _common_flags(p)
    p.set_defaults(func=run_intervene)


def run_intervene(args) -> int:
    threads.use(args.threads)
    span = _span(args.span)
    model, text = _model_and_text(args)
    mode = "clamp" if args.clamp is not None else args.ablate
    r = intervene(model, text, args.unit, mode, value=args.clamp, span=span, controls=args.controls,
                  seed=args.seed, language=args.language, name=str(args.file))
    r.pop("delta")
    if args.json:
        return _print_json(r)
    print(f"{r['unit']} held at {r['value']:.4g} ({mode})" + (f" over {span[0]}:{span[1]}" if span else "")
          + f", {r['chars']:,} characters: {r['bpc']:.4f} -> {r['held_bpc']:.4f} bits/char "
          f"(delta {r['delta_bpc']:+.4f})")
    ctl = r.get("controls")
    if ctl:
        print(f"against {ctl['n']} random units of the same layer and kind: percentile {ctl['percentile']:.1f} "
              f"(their delta from {min(ctl['delta_bpc']):+.4f} to {max(ctl['delta_bpc']):+.4f})")
    print(f"{'feature':<18} {'fraction':>8} {'inside':>9} {'outside':>9} {'percentile inside':>18}")
    for f, e in r["by_feature"].items():
        fmt = lambda v: f"{v:+9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
        pct = ctl["by_feature"].get(f) if ctl else None
        print(f"{f:<18} {e['fraction']:>8.3f} {fmt(e['inside'])} {fmt(e['outside'])} "
              f"{(f'{pct:.1f}' if pct is not None else '-'):>18}")
    print("largest changes (bits for the next character):")
    for e in r["largest"][:5]:
        print(f"  {e['at']:>8} {e['delta_bits']:+.3f}  {_show(e['context'])!r} -> {_show(e['next'])!r}")
    return 0


# --- attribute ----------------------------------------------------------------------------------
def add_attribute(sub) -> None:
    p = sub.add_parser(
        "attribute", help="which earlier characters the prediction at one character rests on (integrated gradients)",
        description="For the prediction after character N, attribute log p(next character) to each of the last "
                    "--window characters by integrated gradients (from a blank window, or zeros, to the text, "
                    "with the state before the window held fixed) and gradient x input; report the relative "
                    "completeness error of the integrated gradients.")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read")
    p.add_argument("--at", type=int, required=True, metavar="N", help="the character whose prediction is explained")
    p.add_argument("--window", type=int, default=100, metavar="W", help="characters attributed, ending at N (default 100)")
    p.add_argument("--steps", type=int, default=512, metavar="M", help="integration steps (default 512)")
    p.add_argument("--baseline", default="space", metavar="CHAR|space|zero",
                   help="the window it integrates from: every position this character, or a space (the default), "
                        "or the zero vector")
    p.add_argument("--target", default=None, metavar="CHAR", help="explain the log-probability of this character "
                   "(default: the one that follows)")
    p.add_argument("--top", type=int, default=15, metavar="K", help="characters listed (default 15)")
    _common_flags(p)
    p.set_defaults(func=run_attribute)


def run_attribute(args) -> int:
    threads.use(args.threads)
    model, text = _model_and_text(args)
    r = attribute(model, text, args.at, window=args.window, steps=args.steps, target=args.target,
                  baseline=" " if args.baseline == "space" else args.baseline, name=str(args.file))
    if args.json:
        return _print_json(r)
    a, b = r["window"]
    print(f"log p({_show(r['target'])!r} | ...{_show(text[max(a, b - 40):b])!r}) = {r['logp']:.4f}, "
          f"from the baseline {r['baseline_logp']:.4f}; integrated gradients add up to {r['ig_sum']:.4f} "
          f"(completeness error {100 * r['completeness_error']:.2f}%, {r['steps']} steps)")
    if r["completeness_error"] > 0.01:
        print("the error is above 1%: give more --steps, a shorter --window, or another --baseline")
    print(f"{'offset':>6} {'at':>8} {'char':>5} {'IG':>9} {'grad x input':>13}")
    top = sorted(r["attributions"], key=lambda e: -abs(e["ig"]))[:args.top]
    for e in sorted(top, key=lambda e: e["offset"]):
        print(f"{e['offset']:>6} {e['at']:>8} {_show(e['char'])!r:>5} {e['ig']:+9.4f} {e['grad_x_input']:+13.4f}")
    return 0


# --- span ---------------------------------------------------------------------------------------
def add_span(sub) -> None:
    p = sub.add_parser(
        "span", help="how far back a unit looks: |d unit_t / d x_(t-k)| as k grows, and its half-life",
        description="Average, over evenly spaced characters t of the text, the size of the gradient of the unit "
                    "at t with respect to the input encoding k characters before, for k = 0..--max-offset; "
                    "report the curve and the half-life (the first offset past the peak where it falls below "
                    "half of the peak).")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read")
    p.add_argument("--unit", required=True, metavar="UNIT", help="the unit, named as `unrolled cells` names it")
    p.add_argument("--max-offset", type=int, default=100, metavar="K", help="offsets measured (default 100)")
    p.add_argument("--samples", type=int, default=64, metavar="N", help="characters averaged over (default 64)")
    _common_flags(p)
    p.set_defaults(func=run_span)


def run_span(args) -> int:
    threads.use(args.threads)
    model, text = _model_and_text(args)
    r = memory_span(model, text, args.unit, max_offset=args.max_offset, samples=args.samples, name=str(args.file))
    if args.json:
        return _print_json(r)
    hl = f"{r['half_life']} characters" if r["half_life"] is not None else f"more than {args.max_offset} characters"
    print(f"{r['unit']}: peak at offset {r['peak_offset']}, half-life {hl} ({r['samples']} characters averaged)")
    g = r["gradient"]
    top = max(g) or 1.0
    for k in sorted({0, 1, 2, 3, 5, 10, 20, 50, 100, 200, len(g) - 1} & set(range(len(g)))):
        print(f"{k:>5} {g[k]:10.4g} {'#' * int(round(40 * g[k] / top))}")
    return 0


# --- probe --------------------------------------------------------------------------------------
def add_probe(sub) -> None:
    p = sub.add_parser(
        "probe", help="a linear probe for a feature on all units of a layer, with the best unit and a control task",
        description="Fit a linear probe (logistic for yes/no features, ridge for numbers) on every unit of the "
                    "layer over the first part of the text, score it on the rest (AUC or Pearson r), beside the "
                    "best single unit; the control task (random labels by character type) gives "
                    "selectivity = probe score - control score.")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read")
    p.add_argument("--feature", required=True, metavar="SPEC", help="a built-in feature, NAME=REGEX or module:function")
    p.add_argument("--layer", type=int, default=None, metavar="L", help="the layer probed (default: the top one)")
    p.add_argument("--states", default=None, metavar="KEYS",
                   help="quantities probed, comma-separated (default: what the layer carries, h,c for an LSTM)")
    p.add_argument("--sample", type=int, default=100_000, metavar="N", help="characters used, evenly spaced (default 100000)")
    p.add_argument("--fit-fraction", type=float, default=0.5, metavar="F",
                   help="the first F of them fit the probe, the rest score it (default 0.5)")
    p.add_argument("--l2", type=float, default=1e-3, help="the weight penalty (default 0.001)")
    p.add_argument("--controls", type=int, default=5, metavar="N", help="control labellings averaged (default 5)")
    p.add_argument("--language", default="auto", choices=["auto", "c", "python", "prose"],
                   help="how to find comments and strings (default: guessed from the text)")
    _common_flags(p)
    p.set_defaults(func=run_probe)


def run_probe(args) -> int:
    threads.use(args.threads)
    if args.sample < 4:
        raise UserError(f"--sample must be at least 4, got {args.sample}")
    model, text = _model_and_text(args)
    r = probe(model, text, args.feature, layer=args.layer, states=args.states.split(",") if args.states else None,
              sample=args.sample, fit_fraction=args.fit_fraction, l2=args.l2, controls=args.controls,
              language=args.language, name=str(args.file))
    if args.json:
        return _print_json(r)
    m = r["metric"].upper() if r["metric"] == "auc" else "r"
    bu = r["best_unit"]
    print(f"{r['feature']} from layer {r['layer']} ({r['units']} units, {', '.join(r['states'])}): fitted on "
          f"{r['fit_rows']:,} characters, scored on {r['test_rows']:,}")
    print(f"  probe          {m} {r['probe']:.4f}")
    print(f"  best unit      {m} {bu['score']:.4f}  ({bu['unit']}{', low inside' if bu['sign'] < 0 else ''})")
    print(f"  control task   {m} {r['control']:.4f}  (labels by character type at random)")
    print(f"  selectivity    {r['selectivity']:+.4f}")
    return 0


# --- emergence ----------------------------------------------------------------------------------
def add_emergence(sub) -> None:
    p = sub.add_parser(
        "emergence", help="when each feature's cell appears over training, from a run's snapshots",
        description="For every snapshot of a run trained with `unrolled train --snapshot-every N`, score the best "
                    "unit for each feature, the unit best at the end, a linear probe on the top layer, the share "
                    "of forget gates mostly open and bits per character, on the same characters of the text; "
                    "print the table and draw the curves.")
    p.add_argument("run", metavar="RUN", help="a run directory with snapshots/")
    p.add_argument("file", help="a UTF-8 text file to score on (ideally text the model never trained on)")
    p.add_argument("--feature", action="append", dest="features", metavar="SPEC",
                   help="a feature to follow (repeatable; default in_comment, in_string, position_in_line, bracket_depth)")
    p.add_argument("--sample", type=int, default=30_000, metavar="N", help="characters scored, evenly spaced (default 30000)")
    p.add_argument("--no-probes", action="store_true", help="skip the probes (faster)")
    p.add_argument("--png", default="emergence.png", metavar="PNG", help="the plot to write (default emergence.png)")
    p.add_argument("--language", default="auto", choices=["auto", "c", "python", "prose"],
                   help="how to find comments and strings (default: guessed from the text)")
    _common_flags(p)
    p.set_defaults(func=run_emergence)


def run_emergence(args) -> int:
    threads.use(args.threads)
    text = analyses.read_text(args.file, args.split, args.max_chars)
    r = emergence(args.run, text, features=args.features, language=args.language, sample=args.sample,
                  probes=not args.no_probes, unknown=args.unknown, name=str(args.file))
    if args.png:
        emergence_png(r, args.png)
    if args.json:
        return _print_json(r)
    print(f"{len(r['steps'])} snapshots of {args.run}, {r['scored_chars']:,} of {r['chars']:,} characters scored")
    print(f"{'step':>8} {'bits/char':>9} " + " ".join(f"{f[:16]:>16}" for f in r["features"]))
    for i, step in enumerate(r["steps"]):
        cells = []
        for e in r["features"].values():
            probe = f"/{e['probe'][i]:.2f}" if e["probe"][i] is not None else ""
            cells.append(f"{e['best'][i]:.3f}{probe}".rjust(16) if e["best"][i] is not None else f"{'-':>16}")
        print(f"{step:>8} {r['bpc'][i]:>9.3f} " + " ".join(cells))
    for f, e in r["features"].items():
        when = f"from step {e['appears']}" if e["appears"] is not None else "not formed"
        print(f"{f}: {e['final_unit']} (best at the end) {when}")
    if args.png:
        print(f"wrote {args.png}")
    return 0
