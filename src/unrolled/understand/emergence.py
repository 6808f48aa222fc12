"""Emergence over training: when does each feature's unit appear?

A run trained with `unrolled train --snapshot-every N` keeps its weights every N updates
(`charlm/snapshots.py`). For every snapshot, on the same text and the same evenly spaced
characters, this scores:

* the best single unit for each feature (`search.rank_units` over h and c of every layer, as
  `unrolled cells`: its strength max(AUC, 1 - AUC) or |r|), and the unit that is best at the
  last snapshot followed back through the earlier ones;
* a linear probe for each feature on the top layer (`probe.probe_arrays`: AUC or r on the held-out
  half);
* gate saturation: per layer, the share of forget-gate units (LSTM; update gates for a GRU) open
  (> 0.9) more than half the time;
* the model's bits per character on the text.

`appears` is the first snapshot step from which the final unit's strength stays at or above 90%
of its strength at the last snapshot: when that cell has formed. Everything is plain data;
`emergence_png` draws it.
"""
from __future__ import annotations

import numpy as np

from unrolled.cells import facts
from unrolled.charlm.run import load
from unrolled.charlm.snapshots import list_snapshots
from unrolled.errors import UserError
from unrolled.understand.features import compute as compute_features
from unrolled.understand.lexer import guess_language
from unrolled.understand.probe import probe_arrays
from unrolled.understand.record import fit_to_vocabulary, record
from unrolled.understand.report import sample_positions
from unrolled.understand.saturation import gate_saturation
from unrolled.understand.search import rank_units, score_units

DEFAULT_FEATURES = ("in_comment", "in_string", "position_in_line", "bracket_depth")
HOLD = 0.9  # a cell has appeared once it stays at this share of its final strength


def _score_snapshot(model, text: str, rows: np.ndarray, labels: dict, chars: np.ndarray, probes: bool) -> dict:
    """Everything measured on one snapshot (see the module doc)."""
    cell = facts(model.rnn)
    gate = "f" if "f" in cell.sigmoid_gates else ("z" if "z" in cell.sigmoid_gates else None)
    keys = cell.carries + ((gate,) if gate else ())
    rec = record(model, text, keys=keys, positions=rows, probs=False, warmup=256)
    values, names = rec.units(cell.carries)
    top = rec.num_layers - 1
    X_top, top_names = rec.units(cell.carries, layers=[top])
    sub = {k: v[rows] for k, v in labels.items()}
    ranking = rank_units(values, names, sub, top=1, screen=None)
    out = {"bpc": rec.bits_per_char(), "values": values, "names": names, "features": {}}
    for f, entry in ranking.items():
        b = entry["best"][0] if entry["best"] else None
        out["features"][f] = {"metric": entry["metric"], "best_unit": b["unit"] if b else None,
                              "best": b["strength"] if b else None,
                              "probe": probe_arrays(X_top, sub[f], chars, top_names, controls=1)["probe"]
                              if probes else None}
    if gate:
        sat = gate_saturation(rec)
        out["gates_open"] = {f"{gate}{layer}": float((sat[f"{gate}{layer}"]["right"] > 0.5).mean())
                             for layer in range(rec.num_layers)}
    return out


def emergence(run, text: str, features=None, language: str = "auto", sample: int = 30_000, probes: bool = True,
              unknown: str = "error", name: str = "the text") -> dict:
    """Score every snapshot of `run` on `text` (module doc). Returns

        {"steps": [...], "bpc": [...], "gates_open": {"f1": [...], ...},
         "features": {feature: {"metric", "best": [...], "best_unit": [...], "final_unit",
                                "final_unit_strength": [...], "probe": [...], "appears": step or None}}}"""
    snaps = list_snapshots(run)
    text = fit_to_vocabulary(load(snaps[-1][1]), text, unknown, name)  # every snapshot has the run's vocabulary
    lang = guess_language(text) if language == "auto" else language
    labels = compute_features(text, list(features or DEFAULT_FEATURES), lang)
    rows = sample_positions(len(text), sample)
    if rows.size < 20:
        raise UserError(f"{name} is too short to score cells on; give it at least 20 characters")
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)[rows]
    scored = []
    for step, folder in snaps:
        s = _score_snapshot(load(folder), text, rows, labels, chars, probes)
        scored.append((step, s))
    steps = [step for step, _ in scored]
    result = {"run": str(run), "steps": steps, "chars": len(text), "scored_chars": int(rows.size),
              "language": lang, "bpc": [s["bpc"] for _, s in scored], "features": {},
              "gates_open": {k: [s.get("gates_open", {}).get(k) for _, s in scored]
                             for k in scored[-1][1].get("gates_open", {})}}
    last = scored[-1][1]
    for f in labels:
        final_unit = last["features"][f]["best_unit"]
        metric = last["features"][f]["metric"]
        curve = []
        for _, s in scored:  # the final unit's own strength at every snapshot
            j = s["names"].index(final_unit) if final_unit else None
            sc = float(score_units(s["values"][:, [j]], {f: labels[f][rows]})[f][0]) if j is not None else np.nan
            curve.append(max(sc, 1 - sc) if metric == "auc" else abs(sc))  # as rank_units' strength
        result["features"][f] = {
            "metric": metric, "best": [s["features"][f]["best"] for _, s in scored],
            "best_unit": [s["features"][f]["best_unit"] for _, s in scored], "final_unit": final_unit,
            "final_unit_strength": curve, "probe": [s["features"][f]["probe"] for _, s in scored],
            "appears": appears(steps, curve)}
    return result


def appears(steps, curve, hold: float = HOLD):
    """The first step from which `curve` stays at or above `hold` x its last value (None: never)."""
    c = np.asarray(curve, dtype=np.float64)
    if c.size == 0 or not np.isfinite(c[-1]) or c[-1] <= 0:
        return None
    ok = np.nan_to_num(c, nan=-np.inf) >= hold * c[-1]
    bad = np.nonzero(~ok)[0]
    first = 0 if bad.size == 0 else bad[-1] + 1
    return int(steps[first]) if first < len(steps) else None


def emergence_png(result: dict, path, title: str | None = None):
    """Two panels over the snapshot steps: each feature's best unit (solid), the final unit
    (dotted) and the probe (dashed), its appearance marked; below, bits per character and the
    share of forget gates mostly open per layer."""
    import matplotlib  # here, not at the top: only the PNG needs it (as understand/render.py)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    fig, (ax, low) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for i, (f, e) in enumerate(result["features"].items()):
        col = f"C{i}"
        metric = "AUC" if e["metric"] == "auc" else "|r|"
        ax.plot(steps, e["best"], "-o", color=col, ms=3, label=f"{f}: best unit ({metric})")
        ax.plot(steps, e["final_unit_strength"], ":", color=col, label=f"  {e['final_unit']} (best at the end)")
        if any(p is not None for p in e["probe"]):
            ax.plot(steps, [np.nan if p is None else p for p in e["probe"]], "--", color=col, label="  probe, top layer")
        if e["appears"] is not None:
            ax.axvline(e["appears"], color=col, alpha=0.3)
    ax.set_ylabel("score (AUC, or |r| for numbers)")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.set_title(title or f"cells over training: {result['run']}")
    low.plot(steps, result["bpc"], "-k", label="bits/char on the text")
    low.set_ylabel("bits/char")
    twin = low.twinx()
    for k, v in result["gates_open"].items():
        twin.plot(steps, v, "--", label=f"{k} open > half the time")
    twin.set_ylabel("share of gate units")
    low.set_xlabel("training step (snapshot)")
    lines = low.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    low.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
