"""What the viewer computes: a model, the texts it is shown, and the understanding tools over them.

No web framework here: every method takes plain Python values and returns JSON-able dicts, so
the same object is driven by the HTTP app (`unrolled.web.app`) and by tests directly.

A text is addressed by its id, the first 16 hex digits of SHA-256 of its UTF-8 bytes, so two
clients that send the same text share one entry, and a client that holds an id keeps getting
answers about *that* text whatever other clients add. The last `keep_texts` texts are kept.

Activations are recorded on demand (`unrolled.understand.record`) in two groups: the first
request that needs the hidden state of a text records h (and the LSTM's c) of every layer with
the predicted distributions; the first that needs a gate records all the gates. Each group of a
text is recorded once, kept as float16 (a colour needs far less precision), and served from
memory; the recordings of the last `keep_recorded` texts are kept.

A long text is recorded as parallel streams of `stream_chars` characters, each of which first
reads the `warmup` characters before it, so its state at its start is close to the state of one
pass over the whole text (a text up to `stream_chars` long is one exact pass). The steps of the
loop then number about stream_chars + warmup instead of the text's length.
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unrolled.cells import facts
from unrolled.errors import UserError
from unrolled.understand import features as feats
from unrolled.understand import search
from unrolled.charlm.text import read_file
from unrolled.understand.record import Recording, fit_to_vocabulary, record
from unrolled.understand.report import signed
from unrolled.understand.saturation import gate_saturation

MAX_CHARS = 20_000  # longest text the page is given (one <span> per character in the browser)
MAX_UNITS = 32  # units returned by one activations request
MAX_PREDICTION_SPAN = 2_000  # positions in one predictions request
MAX_SAMPLE = 5_000  # characters one sample request may generate
MAX_TOP = 100  # ranked units per feature


def groups(cell) -> tuple[tuple[str, ...], ...]:
    """The state kinds recorded together in one pass: the carried state (h, and the LSTM's c),
    which also carries the predictions, then the gates if the cell has any."""
    f = facts(cell)
    return (f.carries,) + ((f.gates,) if f.gates else ())


# What each state kind is, for the page's menu (the record module's keys).
KIND_NAMES = {"h": "hidden state h", "c": "cell state c", "i": "input gate i", "f": "forget gate f",
              "g": "candidate g", "o": "output gate o", "r": "reset gate r", "z": "update gate z",
              "n": "candidate n"}


class NotFound(UserError):
    """A text id, file, unit or layer that does not exist (HTTP 404)."""


class TooLarge(UserError):
    """A text or request over the viewer's size limits (HTTP 413)."""


@dataclass
class TextEntry:
    """One text and what has been computed over it so far."""
    id: str
    name: str
    text: str
    language: str
    file_chars: int | None = None  # a server file shown in part: the characters of the whole file
    recordings: dict[str, Recording] = field(default_factory=dict)  # state kind -> its group's recording
    features: dict[str, np.ndarray] = field(default_factory=dict)  # feature name -> labels
    saturation: dict | None = None  # gate_saturation of the gates, measured before float16 storage
    lock: threading.Lock = field(default_factory=threading.Lock)  # one recording at a time


def text_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Explorer:
    """A model and its texts. Thread-safe: the app calls it from a pool of worker threads."""

    def __init__(self, model, info: dict | None = None, files: dict[str, Path] | None = None,
                 max_chars: int = MAX_CHARS, keep_texts: int = 8, keep_recorded: int = 3,
                 stream_chars: int = 1_000, warmup: int = 256, unknown: str = "error"):
        self.model = model
        self.unknown = unknown  # characters the model never saw: error, skip or replace (serve --unknown)
        self.info_extra = info or {}
        self.files = dict(files or {})  # name shown to clients -> the file; nothing else is ever read
        self.max_chars = int(max_chars)
        self.keep_texts = int(keep_texts)
        self.keep_recorded = int(keep_recorded)
        self.stream_chars, self.warmup = int(stream_chars), int(warmup)
        self._recorded: OrderedDict[str, None] = OrderedDict()  # ids of texts holding recordings, oldest first
        self.cell = facts(model.rnn)
        self.kind = self.cell.name
        self.keys = self.cell.state_keys
        self.num_layers = model.rnn.num_layers
        self.hidden_size = model.rnn.hidden_size
        self.chars = list(model.vocab.chars)
        self._texts: OrderedDict[str, TextEntry] = OrderedDict()
        self._lock = threading.Lock()  # guards the text table (not the computations)

    # --- texts ------------------------------------------------------------------------------------
    def add_text(self, text, name: str = "pasted text", file_chars: int | None = None) -> dict:
        """Check a text (type, size, vocabulary) and keep it; returns its summary with the id.
        file_chars: the length of the file the text is the first part of (add_file sets it)."""
        if not isinstance(text, str):
            raise UserError("the field 'text' must be a string of text")
        # JSON may carry lone surrogates ("\ud800"), which no UTF-8 answer can hold.
        name = str(name)[:200].encode("utf-8", "replace").decode("utf-8")
        if not text:
            raise UserError("the text is empty; give at least one character")
        if len(text) > self.max_chars:
            raise TooLarge(f"the text has {len(text):,} characters, more than this viewer's limit of "
                           f"{self.max_chars:,}; send a shorter piece (or start serve with a larger --max-chars)")
        # a UserError naming the characters the model never saw, unless serve --unknown says otherwise
        text = fit_to_vocabulary(self.model, text, self.unknown, name,
                                 hint="remove them, or start serve with --unknown skip or --unknown replace")
        tid = text_id(text)
        with self._lock:
            entry = self._texts.get(tid)
            if entry is None:
                entry = TextEntry(tid, name, text, feats.guess_language(text), file_chars)
                self._texts[tid] = entry
                while len(self._texts) > self.keep_texts:
                    self._texts.popitem(last=False)
            self._texts.move_to_end(tid)
        return self.describe_text(entry)

    def add_file(self, name) -> dict:
        """Explore one of the server's text files, chosen by its listed name only."""
        if not isinstance(name, str) or name not in self.files:
            listed = ", ".join(sorted(self.files)) or "none"
            raise NotFound(f"no text file named {str(name)[:100]!r} on this server; choose one of: {listed}")
        text = read_file(self.files[name], suggest_byte_level=False)
        file_chars = None
        if len(text) > self.max_chars:
            # A file the server owner chose is shown in part rather than refused: its first
            # max_chars characters, cut at the last line end before the limit when there is one.
            # The name stays the file's; file_chars says it was cut (the page says so once).
            cut = text.rfind("\n", 0, self.max_chars) + 1 or self.max_chars
            text, file_chars = text[:cut], len(text)
        return self.add_text(text, name, file_chars=file_chars)

    def list_files(self) -> list[dict]:
        return [{"name": n, "bytes": p.stat().st_size if p.exists() else None} for n, p in sorted(self.files.items())]

    def entry(self, tid) -> TextEntry:
        with self._lock:
            entry = self._texts.get(tid) if isinstance(tid, str) else None
            if entry is None:
                raise NotFound(f"no text with id {str(tid)[:40]!r} (it may have been dropped: the server keeps "
                               f"the last {self.keep_texts}); send the text again with POST /api/text")
            self._texts.move_to_end(tid)
            return entry

    def describe_text(self, entry: TextEntry) -> dict:
        # The features that fit the text's language (features.DEFAULTS, as `unrolled cells`
        # uses them), the first of which is the one the page opens on.
        fitting = list(feats.DEFAULTS[entry.language])
        return {"id": entry.id, "name": entry.name, "length": len(entry.text), "language": entry.language,
                "file_chars": entry.file_chars, "features": fitting, "default_feature": fitting[0]}

    def get_text(self, tid) -> dict:
        entry = self.entry(tid)
        return {**self.describe_text(entry), "text": entry.text}

    def texts(self) -> list[dict]:
        with self._lock:
            return [self.describe_text(e) for e in reversed(self._texts.values())]

    # --- recordings -------------------------------------------------------------------------------
    def recording(self, entry: TextEntry, key: str) -> Recording:
        """The recording of state kind `key` (all layers) over the text, made on first use."""
        if key not in self.keys:
            raise UserError(f"unknown state kind {str(key)[:20]!r}; a {self.kind} model has {', '.join(self.keys)}")
        with entry.lock:
            rec = entry.recordings.get(key)
            if rec is None:
                group = next(g for g in groups(self.cell) if key in g)
                N = len(entry.text)
                streams = -(-N // self.stream_chars)  # ceil: streams of at most stream_chars
                rec = record(self.model, entry.text, keys=group, probs=(group[0] == "h"), streams=streams,
                             window=256, warmup=self.warmup if streams > 1 else 0, name=entry.name)
                if any(k in self.cell.sigmoid_gates for k in group):
                    entry.saturation = gate_saturation(rec)  # exact: a gate at 0.9001 is above 0.9
                rec.states = {k: v.astype(np.float16) for k, v in rec.states.items()}
                for k in group:
                    entry.recordings[k] = rec
            self._note_recorded(entry)
            return rec

    def _note_recorded(self, entry: TextEntry) -> None:
        """Keep the recordings of the last `keep_recorded` texts used; drop older ones (they are
        recorded again if asked for)."""
        with self._lock:
            self._recorded[entry.id] = None
            self._recorded.move_to_end(entry.id)
            while len(self._recorded) > self.keep_recorded:
                old, _ = self._recorded.popitem(last=False)
                if old in self._texts:
                    self._texts[old].recordings = {}

    def _layer(self, layer) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.num_layers:
            raise NotFound(f"unknown layer {layer!r}; this model has layers 0..{self.num_layers - 1}")
        return layer

    def _unit(self, unit) -> int:
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < self.hidden_size:
            raise NotFound(f"unknown unit {unit!r}; units are numbered 0..{self.hidden_size - 1}")
        return unit

    def activations(self, tid, layer: int, key: str, units: list[int]) -> dict:
        """Values of the chosen units on every character: {"units": [{"unit", "values"}], "range"}."""
        entry = self.entry(tid)
        layer = self._layer(layer)
        if not units:
            raise UserError("give at least one unit (units=3 or units=3,17)")
        if len(units) > MAX_UNITS:
            raise TooLarge(f"{len(units)} units asked for; at most {MAX_UNITS} in one request")
        units = [self._unit(u) for u in units]
        rec = self.recording(entry, key)
        block = rec.states[f"{key}{layer}"][:, units]  # (N, k)
        return {"text": entry.id, "layer": layer, "kind": key, "range": value_range(self.kind, key, block),
                "units": [{"unit": f"{key}{layer}:{u}", "index": u, "values": _rounded(block[:, j])}
                          for j, u in enumerate(units)]}

    # --- predictions ------------------------------------------------------------------------------
    def predictions(self, tid, start: int, end: int, k: int = 5) -> dict:
        """The model's top-k guesses for the character after each position in [start, end)."""
        entry = self.entry(tid)
        N = len(entry.text)
        if not (0 <= start < end <= N):
            raise UserError(f"start and end must satisfy 0 <= start < end <= {N} (the text's length)")
        if end - start > MAX_PREDICTION_SPAN:
            raise TooLarge(f"at most {MAX_PREDICTION_SPAN} positions in one predictions request")
        if not 1 <= k <= min(20, len(self.chars)):
            raise UserError(f"k must be between 1 and {min(20, len(self.chars))}")
        rec = self.recording(entry, "h")
        p = rec.probs[start:end]  # (n, V)
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]  # (n, k)
        rows = []
        for i, pos in enumerate(range(start, end)):
            nxt = entry.text[pos + 1] if pos + 1 < N else None
            lp = float(rec.logp_next[pos]) if pos + 1 < N else None
            rows.append({"pos": pos, "next": nxt, "p_next": None if lp is None else round(math.exp(lp), 4),
                         "top": [[self.chars[v], round(float(p[i, v]), 4)] for v in top[i]]})
        return {"text": entry.id, "k": k, "positions": rows}

    def bits_per_char(self, tid) -> dict:
        entry = self.entry(tid)
        rec = self.recording(entry, "h")
        bpc = rec.bits_per_char()
        return {"text": entry.id, "bits_per_char": None if math.isnan(bpc) else round(bpc, 4)}

    # --- features and ranked units ----------------------------------------------------------------
    def feature_list(self) -> list[dict]:
        return [{"name": f.name, "kind": f.kind, "doc": f.doc} for f in feats.FEATURES.values()]

    def feature_values(self, entry: TextEntry, name) -> np.ndarray:
        # Only registered features by name: a client never makes the server compile a pattern or
        # import a module (features.resolve would do both).
        if not isinstance(name, str) or name not in feats.FEATURES:
            raise UserError(f"unknown feature {str(name)[:60]!r}; use one of {', '.join(feats.FEATURES)}")
        with entry.lock:
            if name not in entry.features:
                entry.features[name] = feats.FEATURES[name](entry.text, entry.language)
            return entry.features[name]

    def feature(self, tid, name) -> dict:
        entry = self.entry(tid)
        values = self.feature_values(entry, name)
        out = values.astype(int).tolist() if values.dtype == bool else _rounded(values)
        return {"text": entry.id, "feature": name, "kind": feats.FEATURES[name].kind, "values": out}

    def ranked_units(self, tid, feature, key: str = "h", layer: int | None = None, top: int = 20) -> dict:
        """The units of kind `key` (one layer, or all) that best track `feature`, best first."""
        entry = self.entry(tid)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
            raise UserError(f"top must be a whole number from 1 to {MAX_TOP}")
        layers = range(self.num_layers) if layer is None else [self._layer(layer)]
        labels = self.feature_values(entry, feature)
        rec = self.recording(entry, key)
        values, names = rec.units(keys=(key,), layers=layers)  # (N, U)
        table = search.rank_units(values, names, {feature: labels}, top=top)[feature]
        # "signed" is the score as `unrolled cells` prints it (report.signed: the strength with
        # the direction's sign, -0.990 a unit low where the feature holds); "signed_score" is
        # the same number unrounded. "score" stays the raw AUC or r.
        best = [{**row, "layer": int(row["unit"].split(":")[0][len(key):]),
                 "index": int(row["unit"].split(":")[1]), "signed": signed(row),
                 "signed_score": row["sign"] * row["strength"]} for row in table["best"]]
        note = None
        if table["metric"] == "auc" and table["positives"] in (0.0, 1.0):
            note = f"the feature {feature} is {'never' if table['positives'] == 0 else 'always'} true in this text, so no unit can be scored"
        return {"text": entry.id, "feature": feature, "kind": key, "metric": table["metric"],
                "positives": table["positives"], "best": best, "note": note}

    # --- LSTMVis select and match -----------------------------------------------------------------
    def select(self, tid, start: int, end: int, threshold: float = 0.3, key: str = "h",
               layer: int = 0, pad: int = 1, top: int = 50) -> dict:
        """Units on across [start, end) and off `pad` characters around it, then the other
        stretches of the text where those units are on together."""
        entry = self.entry(tid)
        layer = self._layer(layer)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
            raise UserError("threshold must be a number")
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= 50:
            raise UserError("pad must be a whole number from 0 to 50")
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 200:
            raise UserError("top must be a whole number from 1 to 200")
        for name, v in (("start", start), ("end", end)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise UserError(f"{name} must be a whole number (a character position)")
        rec = self.recording(entry, key)
        values = rec.states[f"{key}{layer}"]  # (N, H)
        units = search.select(values, start, end, threshold, pad_before=pad, pad_after=pad)
        matches = search.match(values, units, threshold, top=top) if units.size else []
        return {"text": entry.id, "layer": layer, "kind": key, "threshold": threshold, "start": start, "end": end,
                "units": [{"unit": f"{key}{layer}:{u}", "index": int(u)} for u in units],
                "matches": [{**m, "snippet": entry.text[m["start"]:m["end"]][:80]} for m in matches]}

    # --- saturation, model ------------------------------------------------------------------------
    def saturation(self, tid) -> dict:
        """Fraction of characters each sigmoid gate unit spends below 0.1 and above 0.9."""
        entry = self.entry(tid)
        gates = self.cell.sigmoid_gates
        if not gates:
            return {"text": entry.id, "gates": [], "note": "a vanilla RNN has no gates"}
        out = []
        self.recording(entry, gates[0])  # records the gates (together) if they are not yet
        for s in entry.saturation.values():
            out.append({"gate": s["gate"], "layer": s["layer"], "left": _rounded(s["left"]),
                        "right": _rounded(s["right"])})
        # The axes of the plot, as `unrolled saturation --png` and the paper (Karpathy et al.
        # 2015, Fig. 3) draw it: left-saturated on x, right-saturated on y.
        axes = {"x": {"field": "left", "label": "fraction left-saturated (< 0.1)"},
                "y": {"field": "right", "label": "fraction right-saturated (> 0.9)"}}
        return {"text": entry.id, "gates": out, "low": 0.1, "high": 0.9, "axes": axes}

    def info(self) -> dict:
        return {
            "cell": self.kind, "num_layers": self.num_layers, "hidden_size": self.hidden_size,
            "kinds": [{"key": k, "name": KIND_NAMES.get(k, k)} for k in self.keys],
            "vocab_size": len(self.chars),
            "features": self.feature_list(),
            "limits": {"max_chars": self.max_chars, "max_units": MAX_UNITS, "max_sample": MAX_SAMPLE,
                       "max_prediction_span": MAX_PREDICTION_SPAN, "max_top": MAX_TOP},
            **self.info_extra,
        }


def value_range(cell: str, key: str, block: np.ndarray) -> list[float]:
    """The values the colour scale spans: a sigmoid gate is centred on 0.5 in [0, 1]; tanh
    quantities (h, candidates) on 0 in [-1, 1]; an unbounded one (the LSTM cell state, the
    minimal cells' h and candidate) on 0 within its largest magnitude in the block shown."""
    if key in facts(cell).sigmoid_gates:
        return [0.0, 1.0]
    if key in facts(cell).unbounded:
        m = float(np.abs(block).max()) if block.size else 1.0
        return [-max(m, 1e-6), max(m, 1e-6)]
    return [-1.0, 1.0]


def _rounded(values: np.ndarray) -> list[float]:
    # Four decimals is far below what a colour shows and keeps the JSON small.
    return np.round(np.asarray(values, dtype=np.float64), 4).tolist()
