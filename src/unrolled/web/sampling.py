"""Sampled text as a stream of pieces, for the viewer's server-sent events.

    c_{t+1} ~ softmax(logits_t / temperature),  fed back as the next input  (unrolled.sample)

`sample_pieces` checks every option and the prime *before* it returns, so a bad request is
answered with an error status instead of a stream that breaks after its headers were sent.
"""
from __future__ import annotations

from typing import Iterator

from unrolled.errors import UserError
from unrolled.charlm.sample import check_options, generate


def sample_pieces(model, prime: str = "", length: int = 200, temperature: float = 1.0,
                  top_k: int | None = None, seed: int | None = None, max_length: int = 5_000,
                  clamps=()) -> Iterator[str]:
    """An iterator of text pieces (usually one character each) continuing `prime`, with the units
    `clamps` [(clamp.Unit, value), ...] held at every step."""
    if not isinstance(prime, str):
        raise UserError("prime must be a string of text")
    if isinstance(length, int) and not isinstance(length, bool) and length > max_length:
        raise UserError(f"length {length} is over this viewer's limit of {max_length} characters")
    if len(prime) > max_length:
        raise UserError(f"the prime has {len(prime)} characters; at most {max_length}")
    check_options(length, temperature, top_k, None, 1, seed)
    if prime:
        model.vocab.encode(prime, unknown="error", what="the prime",  # names characters never seen
                           hint="remove them from the prime")
    return _pieces(model, prime, length, temperature, top_k, seed, clamps)


def _pieces(model, prime, length, temperature, top_k, seed, clamps=()) -> Iterator[str]:
    decoder = model.vocab.decoder()
    for nxt in generate(model, length=length, temperature=temperature, top_k=top_k, prime=prime, seed=seed,
                        clamps=clamps):
        piece = decoder([int(nxt[0])])
        if piece:
            yield piece
    tail = decoder([], final=True)
    if tail:
        yield tail
