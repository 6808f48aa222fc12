"""Gate saturation (Karpathy, Johnson and Fei-Fei 2015, section 4.2).

For each sigmoid gate of each layer (LSTM input i, forget f, output o; GRU reset r, update z)
and each unit j, over the characters t = 1..N of a text:

    left_j  = (1/N) #{t : gate_j(t) < low}      (left-saturated: the gate is shut)
    right_j = (1/N) #{t : gate_j(t) > high}     (right-saturated: the gate is wide open)

with low = 0.1 and high = 0.9 as in the paper. A unit near (0, 0) acts in the gate's linear
middle, a unit on the right edge (right ~ 1) is a gate that is almost always open (a forget
gate there makes a cell that integrates over long spans), one near the top-left corner of the
plot (left ~ 1) is almost always shut. `render.saturation_png` draws the paper's scatter plot.
"""
from __future__ import annotations

from unrolled.cells import facts
from unrolled.understand.record import Recording


def gate_saturation(rec: Recording, low: float = 0.1, high: float = 0.9) -> dict[str, dict]:
    """{"f0": {"gate": "f", "layer": 0, "left": (H,), "right": (H,)}, ...} for every recorded
    sigmoid gate, fractions over the recording's kept characters."""
    out = {}
    for gate in facts(rec.kind).sigmoid_gates:
        for layer in range(rec.num_layers):
            values = rec.states.get(f"{gate}{layer}")
            if values is None:
                continue
            out[f"{gate}{layer}"] = {
                "gate": gate, "layer": layer,
                "left": (values < low).mean(axis=0),  # (H,)
                "right": (values > high).mean(axis=0),  # (H,)
            }
    return out


def summary(sat: dict[str, dict]) -> list[dict]:
    """One row per gate and layer: mean fractions and the share of units saturated most of the
    time (left or right more than half of the steps)."""
    rows = []
    for key, s in sat.items():
        rows.append({"gate": s["gate"], "layer": s["layer"],
                     "mean_left": float(s["left"].mean()), "mean_right": float(s["right"].mean()),
                     "units_mostly_shut": float((s["left"] > 0.5).mean()),
                     "units_mostly_open": float((s["right"] > 0.5).mean())})
    return rows
