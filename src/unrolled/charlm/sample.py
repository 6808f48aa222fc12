"""Generation: each sampled character is fed back as the next input.

    p_t = softmax(logits_t / temperature)        (temperature -> 0 is argmax, 1 the model, > 1 flatter)
    top-k:  keep the k most likely characters, renormalise
    top-p:  keep the smallest set whose probability reaches p (nucleus sampling), renormalise
    c_{t+1} ~ p_t  (or argmax p_t),   then   h_{t+1} = recurrent(embed(c_{t+1}), h_t)

The prime text is read first (its characters must be in the model's vocabulary); with no prime
the model starts from a zero state reading a newline (or its first symbol), which is not printed.
`length` counts new characters only, never the prime. The same seed gives the same text on the
same device. Many samples run in parallel as one batch.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from unrolled.charlm.clamp import ClampedStepper
from unrolled.errors import UserError

MAX_SEED = 2**63 - 1  # the seeds torch.Generator takes, as for training
MAX_SAMPLES = 100_000  # samples run as one batch: beyond this the batch alone would not fit in memory


def check_options(length: int, temperature: float, top_k: int | None, top_p: float | None,
                  num_samples: int, seed: int | None) -> None:
    if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
        raise UserError(f"--length must be a positive integer, got {length!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise UserError(f"--temperature must be a finite number, 0 or more (0 is --argmax), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
        raise UserError(f"--top-k must be a positive integer, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise UserError(f"--top-p must be a number in (0, 1], got {top_p!r}")
    if not isinstance(num_samples, int) or not 0 < num_samples <= MAX_SAMPLES:
        raise UserError(f"--num-samples must be a positive integer up to {MAX_SAMPLES:,}, got {num_samples!r}")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise UserError(f"--seed must be a whole number from 0 to 2**63 - 1, got {seed!r}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """logits (B, V) -> the same with every character outside top-k / top-p set to -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(dim=-1)  # (B, V)
        before = probs.cumsum(dim=-1) - probs  # (B, V): mass of the more likely characters
        drop_sorted = before >= top_p
        # the most likely one is always kept: a p below float32's range (1e-300) compares as 0 >= 0
        drop_sorted[:, 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose(logits: torch.Tensor, temperature: float, argmax: bool, top_k, top_p,
           generator: torch.Generator) -> torch.Tensor:
    """logits (B, V) -> next symbols (B,)."""
    if argmax or temperature < torch.finfo(torch.float32).tiny:  # 0, or so small float32 holds it as 0: the limit is argmax
        return logits.argmax(dim=-1)  # (B,)
    logits = logits.float()  # (B, V)
    if temperature != 1:
        # Shifted so the largest is 0 before dividing: a tiny temperature then sends the others
        # to -inf instead of overflowing all of them to inf (which would make every probability
        # NaN). At 1 there is nothing to divide, and softmax shifts by the largest itself.
        logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature  # (B, V)
    logits = filter_logits(logits, top_k, top_p)  # (B, V)
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)


@torch.no_grad()
def generate(model, length: int = 500, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, argmax: bool = False, prime: str | bytes = "",
             seed: int | None = None, num_samples: int = 1, clamps=()) -> Iterator[torch.Tensor]:
    """Yield the next symbols (num_samples,) one step at a time, `length` times. `clamps`
    [(clamp.Unit, value), ...] holds those units at every step, the prime's too (charlm/clamp.py)."""
    check_options(length, temperature, top_k, top_p, num_samples, seed)
    vocab = model.vocab
    device = next(model.parameters()).device
    if seed is None:
        seed = random.SystemRandom().randrange(2**63)
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = vocab.encode(prime, unknown="error", what="--prime") if len(prime) else []
    if not ids:
        ids = [vocab.index.get(10 if vocab.byte_level else "\n", 0)]
    was_training = model.training
    model.eval()
    try:
        x = torch.tensor(ids, device=device).unsqueeze(0).expand(num_samples, -1)  # (N, P)
        if clamps:  # held units: the prime too is read one character at a time, holding them
            stepper = ClampedStepper(model, clamps, num_samples)
            stepper.reset()
            for j in range(x.shape[1]):
                last = stepper.logits(x[:, j])  # (N, V)
        else:
            logits, state = model(x)  # (N, P, V): the prime in one fused pass
            last = logits[:, -1]  # (N, V)
            stepper = model.stepper(num_samples, state)  # then one character at a time (CharLM.stepper)
        for _ in range(length):
            nxt = choose(last, temperature, argmax, top_k, top_p, generator)  # (N,)
            yield nxt
            last = stepper.logits(nxt)  # (N, V)
    finally:
        model.train(was_training)


def sample(model, length: int = 500, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, argmax: bool = False, prime: str | bytes = "",
           seed: int | None = None, num_samples: int = 1, include_prime: bool = True,
           stream: Callable[[str], None] | None = None, clamps=()):
    """Sample text from a CharLM: `prime` followed by `length` new characters.

    Returns a str (a list of num_samples str when num_samples > 1). `stream(text)` is called with
    each new piece of the first sample as soon as it exists (the prime first, when included).
    `clamps` [(clamp.Unit, value), ...] holds units while generating (see `generate`).
    """
    check_options(length, temperature, top_k, top_p, num_samples, seed)
    if len(prime):  # a prime the model cannot read is refused before anything is printed
        model.vocab.encode(prime, unknown="error", what="--prime")
    # What is printed: lone surrogates (argv's undecodable bytes, for a byte model) cannot be
    # printed as they are, so they show as U+FFFD; the model still reads the bytes themselves.
    raw = prime if isinstance(prime, bytes) else prime.encode("utf-8", "surrogatepass")
    prime_text = raw.decode("utf-8", errors="replace")
    decoder = model.vocab.decoder()
    if stream is not None and include_prime and prime_text:
        stream(prime_text)
    rows: list[list[int]] = [[] for _ in range(num_samples)]
    for nxt in generate(model, length, temperature, top_k, top_p, argmax, prime, seed, num_samples, clamps):
        values = nxt.tolist()
        for row, v in zip(rows, values):
            row.append(v)
        if stream is not None:
            piece = decoder([values[0]])
            if piece:
                stream(piece)
    if stream is not None:
        tail = decoder([], final=True)
        if tail:
            stream(tail)
    head = prime_text if include_prime else ""
    texts = [head + model.vocab.decode(r) for r in rows]
    return texts[0] if num_samples == 1 else texts
