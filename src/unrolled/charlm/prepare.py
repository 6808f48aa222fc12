"""Corpora larger than memory: a vocabulary and a memory-mapped token file, built in one streaming
pass over the text with bounded memory.

`prepare(paths, out)` reads every file in chunks (an incremental UTF-8 decoder, so a character
split across chunks is kept whole), collects the vocabulary and writes each symbol's code point
(or byte) to a scratch file as it goes. The vocabulary is the sorted set of symbols, so indices
are known only at the end; a second pass over the scratch file (not the corpus) maps code points
to indices through a lookup table. Memory stays at a few chunks whatever the corpus size.

The folder it writes:

    tokens.bin      the token indices, uint8 / uint16 / uint32 by vocabulary size, raw
    corpus.json     format version, vocabulary, dtype, token count, the source files

`load_prepared(dir)` returns the vocabulary and an `np.memmap` of the tokens, which
`text.TokenStreams` reads window by window: training never holds the corpus in memory.
"""
from __future__ import annotations

import codecs
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from unrolled.errors import UserError
from unrolled.charlm.text import Vocabulary, default_corpus, resolve_paths

FORMAT = "unrolled-corpus"
VERSION = 1
CHUNK_BYTES = 1 << 22  # 4 MiB of text per read


@dataclass
class Prepared:
    """A prepared corpus: its vocabulary and its tokens as a read-only memory map."""

    path: Path
    vocab: Vocabulary
    tokens: np.memmap
    meta: dict


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32)


def _symbol_chunks(path: Path, byte_level: bool, chunk_bytes: int):
    """Yield arrays of code points (or bytes) of one file, chunk by chunk."""
    decoder = None if byte_level else codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    try:
        with open(path, "rb") as f:
            while True:
                raw = f.read(chunk_bytes)
                final = not raw
                if byte_level:
                    if final:
                        return
                    yield np.frombuffer(raw, dtype=np.uint8).astype(np.uint32)
                    continue
                if b"\x00" in raw:
                    raise UserError(f"{path} looks binary (it contains NUL bytes); prepare text, "
                                    "or pass --byte-level")
                try:
                    text = decoder.decode(raw, final)
                except UnicodeDecodeError as e:
                    raise UserError(f"{path} is not UTF-8 text (bad byte near offset {offset + e.start}); "
                                    "convert it to UTF-8, or pass --byte-level") from None
                offset += len(raw)
                if text:
                    yield np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
                if final:
                    return
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}; check that it is a readable file") from None


def prepare(paths: Sequence[str | os.PathLike] | None, out: str | os.PathLike, byte_level: bool = False,
            chunk_bytes: int = CHUNK_BYTES) -> Prepared:
    """Build `out/` (tokens.bin + corpus.json) from files, directories or globs (or the default
    corpus when `paths` is empty). Written to a temporary folder and renamed, so `out` is either
    complete or absent."""
    out = Path(out)
    if out.exists() and not (out / "corpus.json").exists() and any(out.iterdir()):
        raise UserError(f"--out {out} exists and is not a prepared corpus; choose a new folder")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if paths:
            files = resolve_paths(paths)
            sources = [str(f) for f in files]
            chunks = (c for f in files for c in _symbol_chunks(f, byte_level, chunk_bytes))
        else:
            text = default_corpus()
            sources = ["<python standard library>"]
            data = text.encode("utf-8") if byte_level else text.encode("utf-32-le")
            chunks = iter([np.frombuffer(data, dtype=np.uint8 if byte_level else np.uint32).astype(np.uint32)])
        # 1) one pass over the corpus: code points to a scratch file, the symbol set on the side
        seen = np.zeros(0x110000, dtype=bool)
        count = 0
        scratch = tmp / "codepoints.u32"
        with open(scratch, "wb") as f:
            for c in chunks:
                seen[c] = True
                c.tofile(f)
                count += len(c)
        if count == 0:
            raise UserError(f"{', '.join(map(str, paths or []))}: the text is empty; give files with text in them")
        symbols = np.flatnonzero(seen)
        vocab = Vocabulary(symbols.tolist(), byte_level=True) if byte_level else \
            Vocabulary([chr(s) for s in symbols])
        # 2) code points -> indices through a lookup table, chunk by chunk over the scratch file
        dtype = token_dtype(len(vocab))
        lut = np.zeros(0x110000, dtype=dtype)
        lut[symbols] = np.arange(len(symbols), dtype=dtype)
        # (plain reads, not a memory map: mapped pages would count against resident memory)
        crc = 0  # of the token bytes, so training can fingerprint the corpus without reading it again
        with open(scratch, "rb") as src, open(tmp / "tokens.bin", "wb") as f:
            while (c := np.fromfile(src, dtype=np.uint32, count=chunk_bytes)).size:
                ids = lut[c]
                crc = zlib.crc32(ids.tobytes(), crc)
                ids.tofile(f)
        scratch.unlink()
        meta = {"format": FORMAT, "version": VERSION, "vocab": vocab.to_json(), "dtype": dtype.name,
                "tokens": count, "crc32": crc,
                "sources": sources}
        (tmp / "corpus.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_prepared(out)


def is_prepared(path: str | os.PathLike) -> bool:
    return (Path(path) / "corpus.json").is_file()


def load_prepared(path: str | os.PathLike) -> Prepared:
    """A prepared folder -> its vocabulary and a read-only memory map of its tokens."""
    path = Path(path)
    try:
        meta = json.loads((path / "corpus.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a prepared corpus ({e}); make one with `unrolled prepare`") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise UserError(f"{path} is a prepared corpus of another format or version; prepare it again")
    dtype = np.dtype(meta["dtype"])
    size = (path / "tokens.bin").stat().st_size if (path / "tokens.bin").exists() else -1
    if size != meta["tokens"] * dtype.itemsize:
        raise UserError(f"{path / 'tokens.bin'} is missing or truncated; prepare the corpus again")
    tokens = np.memmap(path / "tokens.bin", dtype=dtype, mode="r", shape=(meta["tokens"],))
    return Prepared(path, Vocabulary.from_json(meta["vocab"]), tokens, meta)
