"""Decoding an encoder-decoder: greedy search and beam search.

Both ask the model for three things only: `encode(x, lengths) -> state`,
`decode_step(previous ids (N,), state) -> (log p (N, V), state)`, and its `bos_token`,
`eos_token` and `max_target_length` (see `unrolled.EncoderDecoder`).

Greedy: y_t = argmax_v log p(v | y_<t, x), until <eos> or the length limit.

Beam search keeps the K prefixes of highest total log-probability
    score(y_1..y_t) = sum_{u <= t} log p(y_u | y_<u, x);
at every step each of the K prefixes is extended by every token (K * V candidates) and the best K
survive. A prefix that has emitted <eos> is finished: its only continuation is <eos> again at
cost 0, so it keeps its score and competes with the longer ones. At the end the best finished
prefix wins, by score / length^alpha (alpha = `length_penalty`, 0 = plain log-probability, so
a beam of width 1 is exactly greedy search; tests/test_topologies_decode.py proves it).
"""
from __future__ import annotations

import torch
from torch import Tensor


def _reorder(state, index: Tensor):
    """Pick batch rows of a state (L, N, H) (or an LSTM's (h, c)) by index (N',)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def _cut(rows: Tensor, eos: int) -> list[list[int]]:
    """Token rows (N, T) -> lists, each stopped before its first <eos>."""
    out = []
    for row in rows.tolist():
        out.append(row[:row.index(eos)] if eos in row else row)
    return out


def _limit(model, max_length: int | None) -> int:
    limit = model.max_target_length if max_length is None else max_length
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_length must be a positive integer, got {limit!r}")
    return limit


@torch.no_grad()
def greedy_decode(model, x: Tensor, lengths=None, max_length: int | None = None) -> list[list[int]]:
    """The argmax token at every step; x (B, S) -> B lists of target ids (without <bos>/<eos>)."""
    limit = _limit(model, max_length)
    state = model.encode(x, lengths)
    B = x.shape[0]
    previous = torch.full((B,), model.bos_token, dtype=torch.long, device=x.device)
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    steps = []
    for _ in range(limit):
        log_p, state = model.decode_step(previous, state)  # (B, V)
        token = torch.where(done, model.eos_token, log_p.argmax(-1))  # (B,)
        steps.append(token)
        done |= token == model.eos_token
        previous = token
        if bool(done.all()):
            break
    return _cut(torch.stack(steps, dim=1), model.eos_token)


@torch.no_grad()
def beam_search(model, x: Tensor, lengths=None, beam_width: int = 4, max_length: int | None = None,
                length_penalty: float = 0.0) -> tuple[list[list[int]], list[float]]:
    """Beam search over a batch; x (B, S) -> (B lists of target ids, their total log-probabilities)."""
    if not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    limit = _limit(model, max_length)
    B, K, eos = x.shape[0], beam_width, model.eos_token
    state = model.encode(x, lengths)
    rows = torch.arange(B, device=x.device).repeat_interleave(K)  # (B*K,) beam k of row b at b*K + k
    state = _reorder(state, rows)
    scores = torch.full((B, K), float("-inf"), dtype=torch.float64, device=x.device)  # sums of many logs: double
    scores[:, 0] = 0.0  # K copies of one empty prefix: only the first may grow at step 1
    tokens = torch.empty(B * K, 0, dtype=torch.long, device=x.device)
    finished = torch.zeros(B * K, dtype=torch.bool, device=x.device)
    lengths_so_far = torch.zeros(B * K, dtype=torch.float64, device=x.device)
    previous = torch.full((B * K,), model.bos_token, dtype=torch.long, device=x.device)
    for _ in range(limit):
        log_p, state = model.decode_step(previous, state)  # (B*K, V)
        V = log_p.shape[1]
        log_p = log_p.to(scores.dtype)
        only_eos = torch.full_like(log_p[0], float("-inf"))
        only_eos[eos] = 0.0
        log_p = torch.where(finished.unsqueeze(1), only_eos, log_p)  # finished: <eos> at cost 0
        candidates = (scores.view(B * K, 1) + log_p).view(B, K * V)  # (B, K*V)
        scores, best = candidates.topk(K, dim=1)  # (B, K)
        source = (torch.arange(B, device=x.device).unsqueeze(1) * K + best // V).view(-1)  # (B*K,)
        token = (best % V).view(-1)  # (B*K,)
        state = _reorder(state, source)
        lengths_so_far = lengths_so_far[source] + (~finished[source]).to(lengths_so_far.dtype)
        finished = finished[source] | (token == eos)
        tokens = torch.cat([tokens[source], token.unsqueeze(1)], dim=1)  # (B*K, t)
        previous = token
        if bool(finished.all()):
            break
    ranked = scores.view(-1) / lengths_so_far.clamp(min=1) ** length_penalty if length_penalty else scores.view(-1)
    ranked = ranked.view(B, K).masked_fill(~finished.view(B, K) & finished.view(B, K).any(1, keepdim=True),
                                           float("-inf"))  # prefer finished prefixes when there are any
    pick = torch.arange(B, device=x.device) * K + ranked.argmax(1)  # (B,)
    return _cut(tokens[pick], eos), scores.view(-1)[pick].tolist()
