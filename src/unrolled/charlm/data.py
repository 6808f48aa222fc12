"""The text a run trains on: the corpus read, encoded and split by position, and the parallel
streams the training loop reads in windows.

The split is train, validation, test in that order (never shuffled); the streams are B (W * B
over W processes) contiguous rows of the training part (text.TokenStreams). A corpus made by
`unrolled prepare` is memory-mapped instead of read.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from unrolled.charlm import distributed as ddp
from unrolled.charlm.config import Config, TrainConfig
from unrolled.errors import UserError
from unrolled.charlm.prepare import is_prepared, load_prepared
from unrolled.charlm.text import Vocabulary, read_corpus, split, to_tokens


@dataclass
class Data:
    """A corpus split by position, as token array-likes (NumPy arrays or memory maps)."""
    vocab: Vocabulary
    train: object
    val: object
    test: object
    fingerprint: dict  # {"chars": N, "crc32": ...}: a resume checks the text is the same


def fingerprint(tokens: np.ndarray, chunk: int = 1 << 24) -> dict:
    """Length and CRC-32 of a token array."""
    crc = 0
    for i in range(0, len(tokens), chunk):  # in chunks: a memory-mapped corpus may not fit in memory
        crc = zlib.crc32(np.ascontiguousarray(tokens[i:i + chunk]).tobytes(), crc)
    return {"chars": int(len(tokens)), "crc32": crc}


def prepare_data(cfg: Config, vocab: Vocabulary | None = None, what: str = "the training text") -> Data:
    """Read, encode and split the corpus of `cfg.data`, in `vocab` when a checkpoint fixes it
    (a resume, --init-from), else in the vocabulary of the text itself."""
    d = cfg.data
    fractions = (1 - d.val_fraction - d.test_fraction, d.val_fraction, d.test_fraction)
    if len(d.paths) == 1 and is_prepared(d.paths[0]):  # a corpus made by `unrolled prepare`: memory-mapped
        prepared = load_prepared(d.paths[0])
        if vocab is not None and vocab != prepared.vocab:
            raise UserError(f"the prepared corpus {d.paths[0]} has another vocabulary than the checkpoint; "
                            "prepare the text again or train without --init-from")
        train, val, test = split(prepared.tokens, fractions)
        # the checksum prepare computed: reading 2 GB again would fill resident memory with its pages
        return Data(prepared.vocab, train, val, test, {"chars": prepared.meta["tokens"], "crc32": prepared.meta["crc32"]})
    text = read_corpus(d.paths, byte_level=d.byte_level)
    if vocab is None:
        vocab = Vocabulary.from_text(text)
    elif vocab.byte_level != d.byte_level:
        raise UserError("--byte-level must match the checkpoint's vocabulary "
                        f"({'bytes' if vocab.byte_level else 'characters'})")
    ids = vocab.encode(text, unknown=d.unknown, replacement=d.replacement, what=what)
    tokens = to_tokens(ids, len(vocab))
    train, val, test = split(tokens, fractions)
    return Data(vocab, train, val, test, fingerprint(tokens))


def make_streams(tokens, t: TrainConfig, group: ddp.Group = ddp.SINGLE) -> ddp.RankStreams:
    """This process's B of the W * B parallel streams (W = 1 without torchrun)."""
    n, rows = len(tokens), t.batch_size * group.world_size
    if t.bptt == "full":
        row = (n - 1) // rows
        if row < 1:
            raise UserError(f"the training text ({n} characters) is too short for --batch-size {t.batch_size}"
                            f"{f' x {group.world_size} processes' if group.active else ''}; "
                            "use a smaller batch or more text")
        return ddp.RankStreams(tokens, t.batch_size, row, None, group)
    streams = ddp.RankStreams(tokens, t.batch_size, t.seq_len, t.stride, group)
    if len(streams) == 0:
        raise UserError(f"the training text ({n} characters) is too short for --batch-size {t.batch_size} "
                        f"x --seq-len {t.seq_len}{f' x {group.world_size} processes' if group.active else ''} "
                        f"(it needs at least {rows * t.seq_len + 1}); use smaller values or more text")
    return streams
