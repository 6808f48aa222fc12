"""Text in: vocabularies, corpora, splits by position, and truncated-BPTT batch streams.

A corpus is a sequence of symbols x_1 .. x_N: Unicode code points of UTF-8 text (the default),
or raw bytes (`byte_level=True`, for data that is not UTF-8). The vocabulary is the sorted set
of symbols seen, so index i always names the same symbol for a given text.

The split is by position, never shuffled: the first 80% train, the next 10% validation, the
last 10% test (as torch-rnn and Karpathy, Johnson and Fei-Fei 2015 do).

Truncated BPTT reads B parallel contiguous streams. The token array is cut into B rows of n
symbols; window k of width T covers columns [k*s, k*s + T) of every row (stride s = T unless
set), so row b of window k+1 continues row b of window k and the hidden state can be carried
across the window edge. `TokenStreams` only slices an array-like (a NumPy array or an
`np.memmap` of a token file), so a corpus larger than memory needs no change here.
"""
from __future__ import annotations

import codecs
import glob
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from unrolled.errors import UserError

UNKNOWN_POLICIES = ("error", "skip", "replace")

# The default corpus: this many characters of the running interpreter's standard library.
DEFAULT_CORPUS_CHARS = 2_000_000


# --- vocabulary ----------------------------------------------------------------------------------
class Vocabulary:
    """The symbols of a text, sorted: characters (code points) or bytes (`byte_level`).

    `encode(text) -> list[int]` and `decode(indices) -> str` are inverses on any text made of
    the vocabulary's symbols. In byte mode a str is encoded as UTF-8 first, and decoding joins
    the bytes and decodes them as UTF-8 (invalid sequences become U+FFFD).
    """

    def __init__(self, symbols: Sequence[str] | Sequence[int], byte_level: bool = False):
        self.byte_level = bool(byte_level)
        if self.byte_level:
            self.symbols = sorted({int(b) for b in symbols})
            if any(not 0 <= b < 256 for b in self.symbols):
                raise ValueError("byte-level symbols must be integers in 0..255")
        else:
            self.symbols = sorted(set(symbols))
            if any(not isinstance(c, str) or len(c) != 1 for c in self.symbols):
                raise ValueError("character symbols must be strings of one code point")
        if not self.symbols:
            raise ValueError("a vocabulary needs at least one symbol")
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_text(cls, text: str | bytes) -> "Vocabulary":
        if isinstance(text, (bytes, bytearray)):
            return cls(np.unique(np.frombuffer(bytes(text), dtype=np.uint8)).tolist(), byte_level=True)
        return cls(set(text))

    # --- the interface the model and sampler use ---
    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def chars(self) -> list[str]:
        """Printable name of each symbol: the character, or the byte as latin-1 in byte mode."""
        return [chr(s) for s in self.symbols] if self.byte_level else list(self.symbols)

    def _units(self, text: str | bytes):
        if self.byte_level:
            if isinstance(text, str):  # argv's undecodable bytes come as lone surrogates: back to those bytes
                try:
                    return list(text.encode("utf-8", "surrogateescape"))
                except UnicodeEncodeError:
                    return list(text.encode("utf-8", "surrogatepass"))
            return list(bytes(text))
        if isinstance(text, (bytes, bytearray)):
            raise TypeError("a character vocabulary encodes str, not bytes")
        return text

    def unknown(self, text: str | bytes) -> list:
        """The distinct symbols of `text` that are not in the vocabulary, in order of appearance."""
        seen = dict.fromkeys(u for u in self._units(text) if u not in self.index)
        return list(seen)

    def encode(self, text: str | bytes, unknown: str = "error", replacement: str | None = None,
               what: str = "the text", hint: str = "remove them, or pass --unknown skip or --unknown replace"
               ) -> list[int]:
        """Symbols -> indices. `unknown` says what to do with a symbol outside the vocabulary:
        "error" (raise a UserError naming them and ending with `hint`, what the caller's user can
        do), "skip" (drop it) or "replace" (use `replacement`, which must be in the vocabulary;
        default " " or the first symbol)."""
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
        units = self._units(text)
        index = self.index
        try:
            return [index[u] for u in units]
        except KeyError:
            pass
        missing = self.unknown(text)
        if unknown == "error":
            raise UserError(f"{what} contains {len(missing)} symbol(s) the model never saw "
                            f"({describe_symbols(missing, self.byte_level)}); {hint}")
        if unknown == "skip":
            return [index[u] for u in units if u in index]
        fill = self.replacement_index(replacement)
        return [index.get(u, fill) for u in units]

    def replacement_index(self, replacement: str | None) -> int:
        if replacement is None:
            key = 32 if self.byte_level else " "
            return self.index.get(key, 0)
        key = self._units(replacement)
        if len(key) != 1 or key[0] not in self.index:
            raise UserError(f"--replacement {replacement!r} must be one symbol of the model's vocabulary")
        return self.index[key[0]]

    def decode(self, indices) -> str:
        if self.byte_level:
            return bytes(self.symbols[i] for i in indices).decode("utf-8", errors="replace")
        return "".join(self.symbols[i] for i in indices)

    def decoder(self):
        """An incremental decoder: feed it index lists, get text as soon as it is whole."""
        return _StreamDecoder(self)

    # --- storage ---
    def to_json(self) -> dict:
        if self.byte_level:
            return {"kind": "bytes", "symbols": list(self.symbols)}
        return {"kind": "chars", "symbols": "".join(self.symbols)}

    @classmethod
    def from_json(cls, obj: dict) -> "Vocabulary":
        if obj.get("kind") == "bytes":
            return cls(obj["symbols"], byte_level=True)
        return cls(list(obj["symbols"]))

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        kind = "bytes" if self.byte_level else "chars"
        return f"Vocabulary({len(self)} {kind})"


class _StreamDecoder:
    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") if vocab.byte_level else None

    def __call__(self, indices, final: bool = False) -> str:
        if self.utf8 is None:
            return self.vocab.decode(indices)
        return self.utf8.decode(bytes(self.vocab.symbols[i] for i in indices), final)


def describe_symbols(symbols, byte_level: bool, limit: int = 5) -> str:
    """A short, readable list of symbols: 'é' (U+00E9), byte 0xff."""
    out = []
    for s in symbols[:limit]:
        out.append(f"byte 0x{s:02x}" if byte_level else f"{s!r} (U+{ord(s):04X})")
    more = f" and {len(symbols) - limit} more" if len(symbols) > limit else ""
    return ", ".join(out) + more


# --- corpora -----------------------------------------------------------------------------------
def resolve_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files, directories (every file below, sorted) and globs -> a sorted, de-duplicated file list."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            below = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not below:
                raise UserError(f"directory {raw} holds no files; give a directory of text files")
            files.extend(below)
        elif glob.has_magic(str(raw)):
            hits = sorted(Path(h) for h in glob.glob(str(raw), recursive=True) if Path(h).is_file())
            if not hits:
                raise UserError(f"the pattern {raw} matches no files; check the path and quote the pattern")
            files.extend(hits)
        else:
            raise UserError(f"{raw} does not exist; give a text file, a directory or a glob")
    return list(dict.fromkeys(files))


def read_file(path: Path, byte_level: bool = False, suggest_byte_level: bool = True) -> str | bytes:
    """A file's text (bytes when `byte_level`), or one sentence saying what is wrong with it.

    `suggest_byte_level`: a command that trains may suggest --byte-level for a file that is not
    UTF-8 text; one that reads text for a model already trained cannot (its vocabulary is fixed).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; give a text file") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}; check that it is a readable file") from None
    if byte_level:
        return data
    if b"\x00" in data:
        raise UserError(f"{path} looks binary (it contains NUL bytes); "
                        + ("train on text, or pass --byte-level" if suggest_byte_level
                           else "give a UTF-8 text file"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); convert it to UTF-8"
                        + (", or pass --byte-level to model its bytes" if suggest_byte_level
                           else " first")) from None


def read_corpus(paths: Sequence[str | os.PathLike] | None = None, byte_level: bool = False) -> str | bytes:
    """The text of every file named (concatenated in order), or the default corpus if none."""
    if not paths:
        text = default_corpus()
        return text.encode("utf-8") if byte_level else text
    parts = [read_file(f, byte_level) for f in resolve_paths(paths)]
    text = (b"" if byte_level else "").join(parts)
    if len(text) == 0:
        raise UserError(f"{', '.join(map(str, paths))}: the text is empty; give a file with some text in it")
    return text


def default_corpus_files(stdlib: str | os.PathLike | None = None) -> list[Path]:
    """The default corpus's files: the top-level `.py` modules of the standard library, sorted."""
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file())


def default_corpus(max_chars: int = DEFAULT_CORPUS_CHARS, stdlib: str | os.PathLike | None = None) -> str:
    """Python source from the running interpreter's standard library: the top-level modules in
    name order, whole files, until `max_chars` characters. Deterministic for a given Python, and
    present wherever Python is, so the main job needs no download."""
    parts, total = [], 0
    for f in default_corpus_files(stdlib):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a module we cannot read is simply not part of the selection
        if total + len(text) > max_chars and parts:
            break
        parts.append(text)
        total += len(text)
    if not parts:
        raise UserError("the standard library sources of this Python were not found; "
                        "give a text file to train on")
    return "".join(parts)


# --- splits ------------------------------------------------------------------------------------
def split_bounds(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[int, int]:
    """Positions (a, b) so that [0, a) is train, [a, b) validation, [b, n) test."""
    train, val, _ = fractions
    return int(round(n * train)), int(round(n * (train + val)))


def split(tokens, fractions: Sequence[float] = (0.8, 0.1, 0.1)):
    """A token array-like -> (train, validation, test) views, contiguous and in order."""
    a, b = split_bounds(len(tokens), fractions)
    return tokens[:a], tokens[a:b], tokens[b:]


def to_tokens(indices: Sequence[int], vocab_size: int) -> np.ndarray:
    """Indices -> the smallest unsigned NumPy array that holds them (1 or 2 or 4 bytes each)."""
    dtype = np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32
    return np.asarray(indices, dtype=dtype)


# --- truncated-BPTT batch streams ---------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """One training window: inputs x (B, T) and targets y (B, T) = x shifted by one symbol."""
    index: int
    x: torch.Tensor
    y: torch.Tensor


class TokenStreams:
    """B parallel contiguous streams over a token array-like, read in windows.

    Row b holds tokens[b*n : b*n + n + 1] with n = (N - 1) // B (the last N - 1 - B*n tokens are
    not read). Window k covers columns [k*stride, k*stride + seq_len) of the inputs, and the
    targets are the same columns one symbol later. With stride == seq_len the windows tile each
    row, so row b of window k+1 starts where row b of window k ended.

    `tokens` may be any array-like with len() and slicing (list, NumPy array, np.memmap); only the
    rows' slices of one window are read at a time.
    """

    def __init__(self, tokens, batch_size: int, seq_len: int, stride: int | None = None):
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self.stride = stride or seq_len
        if not 0 < self.stride <= seq_len:
            raise ValueError(f"stride must be in 1..seq_len ({seq_len}), got {self.stride}")
        self.row_len = (len(tokens) - 1) // batch_size  # n: predicted symbols per row

    def __len__(self) -> int:
        """Number of whole windows in one pass (0 when a row is shorter than one window)."""
        if self.row_len < self.seq_len:
            return 0
        return (self.row_len - self.seq_len) // self.stride + 1

    @property
    def chars_per_window(self) -> int:
        return self.batch_size * self.seq_len

    def window(self, k: int) -> Window:
        start = k * self.stride
        rows = [np.asarray(self.tokens[b * self.row_len + start: b * self.row_len + start + self.seq_len + 1])
                for b in range(self.batch_size)]
        block = torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, T + 1)
        return Window(k, block[:, :-1], block[:, 1:])

    def __iter__(self) -> Iterator[Window]:
        return self.windows()

    def windows(self, start: int = 0) -> Iterator[Window]:
        for k in range(start, len(self)):
            yield self.window(k)

    def tail_windows(self, max_len: int) -> Iterator[Window]:
        """Every predicted symbol of every row exactly once, in windows of at most max_len
        (the last one shorter): what evaluation reads, with the state carried throughout."""
        for start in range(0, self.row_len, max_len):
            stop = min(start + max_len, self.row_len)
            rows = [np.asarray(self.tokens[b * self.row_len + start: b * self.row_len + stop + 1])
                    for b in range(self.batch_size)]
            block = torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, t + 1)
            yield Window(start // max_len, block[:, :-1], block[:, 1:])

