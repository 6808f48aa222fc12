"""What the viewer's evidence panels compute: attributions of one prediction, a linear probe, and
the units a sample holds. Plain functions over an `Explorer` and a text id, returning JSON-able
dicts (the HTTP app calls them in worker threads; tests/test_web_api.py calls the routes).

    attribution(explorer, tid, at, window)   integrated gradients for the prediction after text[at]
    probe(explorer, tid, feature, layer)     a linear probe, the best unit and the control task
    clamps(explorer, specs)                  ["c1:97=3", ...] -> the units sample holds
"""
from __future__ import annotations

from unrolled.charlm.clamp import parse_clamp
from unrolled.errors import UserError
from unrolled.understand import features as feats
from unrolled.understand.attribute import attribute
from unrolled.understand.probe import probe as fit_probe

MAX_WINDOW = 400  # characters one attribution reaches back
MAX_CLAMPS = 16  # units one sample may hold
STEPS = 512  # integration steps (the library's default): the page shows the completeness error beside the colours


def attribution(explorer, tid, at: int, window: int = 100) -> dict:
    """Integrated gradients and gradient x input for the prediction after the character at `at`,
    over the `window` characters ending there (unrolled.understand.attribute, blank baseline)."""
    entry = explorer.entry(tid)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
        raise UserError(f"window must be a whole number from 1 to {MAX_WINDOW}")
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < len(entry.text) - 1:
        raise UserError(f"at must be a character with one after it, 0..{len(entry.text) - 2}")
    baseline = " " if " " in explorer.chars else "zero"
    r = attribute(explorer.model, entry.text, at, window=window, steps=STEPS, baseline=baseline, name=entry.name)
    return {"text": entry.id, **r}


def probe(explorer, tid, feature, layer: int | None = None) -> dict:
    """A linear probe for a registered feature on every unit of one layer of the text."""
    entry = explorer.entry(tid)
    # Only registered features by name: a client never makes the server compile a pattern or
    # import a module.
    if not isinstance(feature, str) or feature not in feats.FEATURES:
        raise UserError(f"unknown feature {str(feature)[:60]!r}; use one of {', '.join(feats.FEATURES)}")
    layer = explorer.num_layers - 1 if layer is None else explorer._layer(layer)
    if len(entry.text) < 20:
        raise UserError("the text is too short to fit and score a probe; give it at least 20 characters")
    r = fit_probe(explorer.model, entry.text, feature, layer=layer, language=entry.language, name=entry.name)
    return {"text": entry.id, **r}


def clamps(explorer, specs: list[str]) -> list:
    """The units a sample holds, from specs like "c1:97=3" (a UserError names the bad one)."""
    if len(specs) > MAX_CLAMPS:
        raise UserError(f"{len(specs)} clamps; at most {MAX_CLAMPS} in one sample")
    return [parse_clamp(s, explorer.model.rnn, "the clamp") for s in specs if s.strip()]
