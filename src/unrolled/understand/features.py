"""Features of text: a label for every character, to compare hidden units against.

The convention, everywhere: character t is labelled by what a reader knows *after reading it*,
because that is what the network's state after step t can know. So an opening quote is already
inside the quotes and a closing quote is already outside; in `/* ... */` the first `/` is not
yet in the comment (it may be a division) and the last `/` is out of it again; in `// ...` the
newline that ends the comment is outside it; a newline starts the next line (position 0).

Two kinds of feature:

* binary (a bool per character): inside double quotes, inside a string literal, inside a
  comment, inside the condition of an `if`; scored by ROC AUC;
* numeric (a number per character): position in the line, length of the line, bracket
  nesting depth, brace depth, indentation depth; scored by Pearson correlation.

Code is lexed once (`lexer.py`: comments, string and character literals in order of
position). Brackets are counted only in code (not in comments, strings, or C preprocessor
lines, whose braces belong to macros).

Users add their own: `regex_feature(pattern)` (inside a match) or any Python function
`text -> array of length len(text)`, registered with `register`.
"""
from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from unrolled.errors import UserError
from unrolled.understand.lexer import C_PREPROCESSOR, LANGUAGES, guess_language, lex

# --- the features -------------------------------------------------------------------------------
def in_quotes(text: str) -> np.ndarray:
    """Inside double quotes in prose: `"` toggles, curly quotes open and close; a blank line
    (a new paragraph) closes an open quote, since a quoted speech reopens in each paragraph."""
    N = len(text)
    out = np.zeros(N, dtype=bool)
    inside = False
    for m in re.finditer(r'["\u201c\u201d]|\n\n', text):
        a = m.start()
        ch = m.group()
        if inside:
            out[prev:a] = True  # noqa: F821 (prev is set whenever inside is True)
        if ch == "\n\n":
            inside = False
        elif ch == '"':
            inside = not inside
        else:
            inside = ch == "\u201c"
        prev = a
    if inside:
        out[prev:] = True
    return out


def in_string(text: str, language: str = "c") -> np.ndarray:
    """Inside a string literal of code (C "..."; Python '...', "...", triple-quoted)."""
    return lex(text, language).string


def in_comment(text: str, language: str = "c") -> np.ndarray:
    """Inside a comment (C `//` and `/* */`, Python `#`)."""
    return lex(text, language).comment


def _line_starts(text: str) -> np.ndarray:
    """(N,) index of the first character of each character's line (a newline starts the next)."""
    N = len(text)
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    is_nl = arr == 10
    # After reading a newline the reader is at the start of the next line, at position 0.
    start = np.where(is_nl, np.arange(N), 0)
    return np.maximum.accumulate(start) if N else start, is_nl


def position_in_line(text: str) -> np.ndarray:
    """Characters read since the last newline: 0 on the newline, 1 on a line's first character."""
    N = len(text)
    start, is_nl = _line_starts(text)
    pos = np.arange(N) - start
    first_line = ~np.maximum.accumulate(is_nl) if N else is_nl
    pos[first_line] += 1  # the text's first line has no newline before it
    return pos.astype(np.float32)


def _line_ids(text: str) -> np.ndarray:
    """(N,) line number of the line each character belongs to (a newline starts the next)."""
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.cumsum(arr == 10)


def line_length(text: str) -> np.ndarray:
    """The length of the line the reader is on (the newline belongs to the line it starts)."""
    ids = _line_ids(text)
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    counts = np.bincount(ids, weights=(arr != 10).astype(np.float64))
    return counts[ids].astype(np.float32)


def indent_depth(text: str, tab: int = 8) -> np.ndarray:
    """The indentation of the reader's line, in columns (a tab is `tab` columns)."""
    ids = _line_ids(text)
    widths = [len(m.group(1).expandtabs(tab)) for m in re.finditer(r"(?:^|(?<=\n))([ \t]*)", text)]
    widths = np.asarray(widths[: ids[-1] + 1] if len(ids) else [], dtype=np.float32)
    return widths[ids] if len(ids) else widths


def _depth(delta: np.ndarray) -> np.ndarray:
    """d_t = max(0, d_{t-1} + delta_t): the running sum, reflected at zero so a stray closing
    bracket cannot make the depth negative for the rest of the text."""
    s = np.cumsum(delta)
    return s - np.minimum(np.minimum.accumulate(s), 0)


@functools.lru_cache(maxsize=4)
def _counted(text: str, language: str) -> np.ndarray:
    """Where brackets count: code outside comments, literals and C preprocessor lines."""
    mask = lex(text, language).code.copy()
    if language == "c":
        for m in C_PREPROCESSOR.finditer(text):
            mask[m.start():m.end()] = False
    return mask


def _bracket_delta(text: str, language: str, opening: str, closing: str) -> np.ndarray:
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    delta = np.zeros(len(text), dtype=np.int64)
    for ch in opening:
        delta[arr == ord(ch)] = 1
    for ch in closing:
        delta[arr == ord(ch)] = -1
    delta[~_counted(text, language)] = 0
    return delta


def bracket_depth(text: str, language: str = "c") -> np.ndarray:
    """Nesting depth of (), [] and {} together, counted in code only."""
    return _depth(_bracket_delta(text, language, "([{", ")]}")).astype(np.float32)


def brace_depth(text: str, language: str = "c") -> np.ndarray:
    """Nesting depth of {} only (C blocks), counted in code only."""
    return _depth(_bracket_delta(text, language, "{", "}")).astype(np.float32)


def in_if_condition(text: str, language: str = "c") -> np.ndarray:
    """Inside the condition of an `if`: C from the `(` after `if` to before its matching `)`;
    Python from after `if`/`elif` to before the `:` at the same bracket depth."""
    N = len(text)
    out = np.zeros(N, dtype=bool)
    if language == "prose":
        return out
    counted = _counted(text, language)
    depth = _depth(_bracket_delta(text, language, "([{", ")]}"))
    # The condition ends at the first `)` (C) or `:` (Python) after it where the depth is back
    # to the depth outside it; such ends are found per depth by binary search.
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if language == "c":
        ends = np.nonzero((arr == ord(")")) & counted)[0]
        pattern = re.compile(r"\bif\s*\(")
    else:
        ends = np.nonzero((arr == ord(":")) & counted)[0]
        pattern = re.compile(r"^[ \t]*(?:el)?if\b", re.MULTILINE)
    end_depth = depth[ends]
    by_depth: dict[int, np.ndarray] = {}
    for m in pattern.finditer(text):
        a = m.end() - 1  # C: the '(' (inside once read); Python: the 'f' of the keyword
        if not counted[a]:
            continue  # in a comment, a string or a preprocessor line (#if)
        target = depth[a] - 1 if language == "c" else depth[a]
        if target not in by_depth:
            by_depth[target] = ends[end_depth == target]
        cand = by_depth[target]
        j = np.searchsorted(cand, a + 1)
        b = cand[j] if j < len(cand) else N
        out[a if language == "c" else a + 1:b] = True
    return out


# --- registry -----------------------------------------------------------------------------------
@dataclass
class Feature:
    """A named labelling of text: fn(text, language) -> (N,) array; kind "binary" or "number"."""

    name: str
    fn: Callable
    kind: str
    doc: str = ""

    def __call__(self, text: str, language: str = "c") -> np.ndarray:
        try:
            values = self.fn(text, language)
        except TypeError:
            values = self.fn(text)
        values = np.asarray(values)
        if values.shape != (len(text),):
            raise UserError(f"feature {self.name!r} gave {values.shape[0] if values.ndim else 0} labels "
                            f"for {len(text)} characters; it must label every character")
        return values.astype(bool) if self.kind == "binary" else values.astype(np.float32)


FEATURES: dict[str, Feature] = {}


def register(name: str, fn: Callable, kind: str | None = None, doc: str = "") -> Feature:
    """Add a feature: fn(text) or fn(text, language) -> (N,) array. The kind is "binary" for a
    bool result and "number" otherwise, unless given."""
    if kind is None:
        kind = "binary" if np.asarray(fn("ab\n")).dtype == bool else "number"
    if kind not in ("binary", "number"):
        raise ValueError(f"a feature's kind is 'binary' or 'number', not {kind!r}")
    FEATURES[name] = Feature(name, fn, kind, doc or _first_line(fn.__doc__))
    return FEATURES[name]


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def regex_feature(pattern: str, name: str | None = None) -> Feature:
    """A binary feature: True on every character inside a match of `pattern`."""
    try:
        rx = re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise UserError(f"the feature pattern {pattern!r} is not a regular expression ({e}); fix it") from None

    def fn(text: str, language: str = "c") -> np.ndarray:
        out = np.zeros(len(text), dtype=bool)
        for m in rx.finditer(text):
            out[m.start():m.end()] = True
        return out

    return Feature(name or pattern, fn, "binary", f"inside a match of /{pattern}/")


for _name, _fn, _kind in (
    ("in_quotes", lambda t, lang="prose": in_quotes(t), "binary"),
    ("in_string", in_string, "binary"),
    ("in_comment", in_comment, "binary"),
    ("in_if_condition", in_if_condition, "binary"),
    ("position_in_line", lambda t, lang="c": position_in_line(t), "number"),
    ("line_length", lambda t, lang="c": line_length(t), "number"),
    ("bracket_depth", bracket_depth, "number"),
    ("brace_depth", brace_depth, "number"),
    ("indent_depth", lambda t, lang="c": indent_depth(t), "number"),
):
    FEATURES[_name] = Feature(_name, _fn, _kind, "")

FEATURES["in_quotes"].doc = "inside double quotes (prose)"
FEATURES["in_string"].doc = "inside a string literal"
FEATURES["in_comment"].doc = "inside a comment"
FEATURES["in_if_condition"].doc = "inside the condition of an if"
FEATURES["position_in_line"].doc = "characters since the last newline"
FEATURES["line_length"].doc = "length of the current line"
FEATURES["bracket_depth"].doc = "nesting depth of (), [], {}"
FEATURES["brace_depth"].doc = "nesting depth of {}"
FEATURES["indent_depth"].doc = "indentation of the line, in columns"

# What each language gets by default.
DEFAULTS = {
    "c": ("in_comment", "in_string", "in_if_condition", "position_in_line", "line_length",
          "bracket_depth", "brace_depth", "indent_depth"),
    "python": ("in_comment", "in_string", "in_if_condition", "position_in_line", "line_length",
               "bracket_depth", "indent_depth"),
    "prose": ("in_quotes", "position_in_line", "line_length"),
}


def resolve(spec: str) -> Feature:
    """A feature from a spec: a registered name, `name=REGEX`, or `module:function`."""
    if spec in FEATURES:
        return FEATURES[spec]
    if "=" in spec:
        name, _, pattern = spec.partition("=")
        return regex_feature(pattern, name.strip() or pattern)
    if ":" in spec:
        mod, _, fn_name = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(mod), fn_name)
        except (ImportError, AttributeError) as e:
            raise UserError(f"cannot import the feature {spec!r} ({e}); give module:function on the path") from None
        probe = np.asarray(fn("ab\n"))
        return Feature(fn_name, fn, "binary" if probe.dtype == bool else "number", _first_line(fn.__doc__))
    raise UserError(f"unknown feature {spec!r}; use one of {', '.join(FEATURES)}, NAME=REGEX or module:function")


def compute(text: str, features=None, language: str = "auto") -> dict[str, np.ndarray]:
    """Label every character: {name: (N,) bool or float32 array}. `features` is a list of
    names, specs (see `resolve`) or Feature objects; the language's defaults when None."""
    if language == "auto":
        language = guess_language(text)
    if language not in LANGUAGES:
        raise UserError(f"unknown language {language!r}; use auto, {', '.join(LANGUAGES)}")
    feats = [f if isinstance(f, Feature) else resolve(f) for f in (features or DEFAULTS[language])]
    return {f.name: f(text, language) for f in feats}


def kinds(features: dict[str, np.ndarray]) -> dict[str, str]:
    """"binary" or "number" for each computed feature, from its dtype."""
    return {k: "binary" if v.dtype == bool else "number" for k, v in features.items()}
