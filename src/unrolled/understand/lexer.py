"""Where a text's comments, strings and code are: per-character masks, for the features.

The convention of the features holds here too: character t is labelled by what a reader knows
*after reading it*. So an opening quote is already inside the string and the closing quote is
outside again; in `/* ... */` the first `/` is not yet in the comment (it may be a division) and
the last `/` is out of it again; in `// ...` the newline that ends the comment is outside it.

Code is lexed once by one regular expression that finds comments, string and character
literals in order of position, so a `"/*"` inside a string is a string and a `"` inside a
comment is comment. `C_PREPROCESSOR` finds C's preprocessor lines, whose brackets belong to macros.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

LANGUAGES = ("c", "python", "prose")

# One scanner per language: the first alternative that matches at the leftmost position wins,
# and the scan resumes after it, so what is inside a comment is never seen as a string.
_C_TOKENS = re.compile(r"""
    (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?(?:\*/|\Z))
  | (?P<string>"(?:\\.|[^"\\\n])*(?:"|$))
  | (?P<char>'(?:\\.|[^'\\\n])*(?:'|$))
""", re.VERBOSE | re.DOTALL | re.MULTILINE)
_PY_TOKENS = re.compile(r"""
    (?P<line_comment>\#[^\n]*)
  | (?P<string>(?:\b[rRbBuUfF]{1,2})?(?:'''(?:\\.|[^\\])*?(?:'''|\Z)|\"\"\"(?:\\.|[^\\])*?(?:\"\"\"|\Z)
        |'(?:\\.|[^'\\\n])*(?:'|$)|"(?:\\.|[^"\\\n])*(?:"|$)))
""", re.VERBOSE | re.DOTALL | re.MULTILINE)
C_PREPROCESSOR = re.compile(r"^[ \t]*#(?:\\\n|[^\n])*", re.MULTILINE)


@dataclass
class Lexed:
    """Per-character masks of a text's lexical regions (True = inside, after reading it)."""

    comment: np.ndarray
    string: np.ndarray
    code: np.ndarray  # not in a comment, string or character literal (delimiters excluded)


def guess_language(text: str) -> str:
    """'c', 'python' or 'prose', from a few telltale tokens in the first 100k characters."""
    head = text[:100_000]
    c = head.count(";\n") + head.count("/*") + head.count("#include") + head.count("{\n")
    py = head.count("def ") + head.count("import ") + head.count(":\n") + head.count("self.")
    if max(c, py) < 5:
        return "prose"
    return "c" if c >= py else "python"


def _token_kind(m: re.Match) -> str:
    return m.lastgroup


@functools.lru_cache(maxsize=4)
def lex(text: str, language: str = "c") -> Lexed:
    """Comment, string-literal and code masks of `text` (see the module doc).

    Cached: several features lex the same text. Treat the masks as read-only."""
    N = len(text)
    comment = np.zeros(N, dtype=bool)
    string = np.zeros(N, dtype=bool)
    code = np.ones(N, dtype=bool)
    if language == "prose":
        return Lexed(comment, string, code)
    scanner = _C_TOKENS if language == "c" else _PY_TOKENS
    for m in scanner.finditer(text):
        a, b = m.span()
        kind = _token_kind(m)
        code[a:b] = False
        closed = kind == "line_comment" or _is_closed(text, kind, a, b)
        if kind == "line_comment":
            comment[a + (2 if language == "c" else 1) - 1:b] = True  # known after '//' or '#'
        elif kind == "block_comment":
            comment[a + 1:b - 1 if closed else b] = True  # from the '*' of '/*' to before the last '/'
        elif kind == "string":
            string[a + _prefix_len(text, a):b - 1 if closed else b] = True  # the closing quote is outside
    return Lexed(comment, string, code)


def _prefix_len(text: str, a: int) -> int:
    """Characters before the opening quote (Python's r, b, f prefixes): those are not inside."""
    k = a
    while text[k] not in "'\"":
        k += 1
    return k - a


def _is_closed(text: str, kind: str, a: int, b: int) -> bool:
    s = text[a:b]
    if kind == "block_comment":
        return len(s) >= 4 and s.endswith("*/")
    if kind in ("string", "char"):
        body = s[_prefix_len(text, a):]
        q = body[0]
        if body[:3] in ('"""', "'''"):
            return len(body) >= 6 and body.endswith(body[:3]) and not _escaped(body, len(body) - 3)
        return len(body) >= 2 and body.endswith(q) and not _escaped(body, len(body) - 1)
    return True


def _escaped(s: str, i: int) -> bool:
    """Whether s[i] is preceded by an odd number of backslashes."""
    n = 0
    while i - 1 - n >= 0 and s[i - 1 - n] == "\\":
        n += 1
    return n % 2 == 1
