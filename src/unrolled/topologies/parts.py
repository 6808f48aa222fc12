"""The parts every topology composes: an input encoding, a head, and the checks and masks that
keep padding out of every result.

    encodings   dense vectors x (B, T, D) as they are; token ids (B, T) as one-hot vectors or rows
                of a learned embedding
    heads       classify: logits = W h + b, cross-entropy;  regress: y = W h + b, squared error
    padding     lengths (B,) checked, a (B, T) mask of the real steps, losses averaged over them
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODINGS = ("dense", "onehot", "embedding")
HEADS = ("classify", "regress")


# --- input encodings ----------------------------------------------------------------------------
class Dense(nn.Module):
    """x_t is already a vector (B, T, D): passed through unchanged."""

    def __init__(self, size: int):
        super().__init__()
        self.input_size = self.output_size = size

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_floating_point(x) or x.shape[-1] != self.input_size:
            raise ValueError(f"dense input must be floating point with last dimension {self.input_size}, "
                             f"got {x.dtype} of shape {tuple(x.shape)}")
        return x


class OneHot(nn.Module):
    """Token id k -> the unit vector e_k of size V: no parameters, every symbol equally far apart."""

    def __init__(self, num_tokens: int):
        super().__init__()
        self.num_tokens = self.output_size = num_tokens
        self.register_buffer("_like", torch.empty(0), persistent=False)  # follows .double() / .to()

    def forward(self, ids: Tensor) -> Tensor:
        check_token_ids(ids, self.num_tokens, "input")
        return F.one_hot(ids, self.num_tokens).to(self._like.dtype)  # (B, T, V)


class Embedding(nn.Embedding):
    """Token id k -> row k of a learned table E (V, E): x_t = E[k]."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__(num_tokens, dim)
        self.output_size = dim

    def forward(self, ids: Tensor) -> Tensor:
        check_token_ids(ids, self.num_embeddings, "input")
        return super().forward(ids)  # (B, T, E)


def check_token_ids(ids: Tensor, num_tokens: int, what: str) -> None:
    """Token ids must be integers in 0..V-1; say which one is not."""
    if torch.is_floating_point(ids) or ids.dtype == torch.bool:
        raise ValueError(f"{what} token ids must be integers, got {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= num_tokens):
        bad = ids[(ids < 0) | (ids >= num_tokens)][0].item()
        raise ValueError(f"{what} token id {bad} is outside the vocabulary 0..{num_tokens - 1}")


def make_encoding(kind: str, size: int, embedding_dim: int | None = None) -> nn.Module:
    """`dense` (size = D), `onehot` (size = V) or `embedding` (size = V, width embedding_dim)."""
    if kind == "dense":
        return Dense(size)
    if kind == "onehot":
        return OneHot(size)
    if kind == "embedding":
        return Embedding(size, embedding_dim or min(64, size))
    raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {kind!r}")


# --- heads --------------------------------------------------------------------------------------
class ClassificationHead(nn.Linear):
    """logits = W h + b (C classes); loss = -log softmax(logits)[target]; prediction = argmax."""

    kind = "classify"

    def loss_terms(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-item cross-entropy: logits (..., C), target (...) class ids -> (...)."""
        check_token_ids(target, self.out_features, "target")
        return F.cross_entropy(logits.reshape(-1, self.out_features), target.reshape(-1),
                               reduction="none").view(target.shape)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(-1)


class RegressionHead(nn.Linear):
    """y = W h + b (K values); loss = mean over the K values of (y - target)^2; prediction = y."""

    kind = "regress"

    def loss_terms(self, y: Tensor, target: Tensor) -> Tensor:
        if target.shape != y.shape:
            raise ValueError(f"regression target must have shape {tuple(y.shape)}, got {tuple(target.shape)}")
        return (y - target).pow(2).mean(-1)

    def predict(self, y: Tensor) -> Tensor:
        return y


def make_head(kind: str, in_features: int, output_size: int) -> nn.Linear:
    if kind == "classify":
        return ClassificationHead(in_features, output_size)
    if kind == "regress":
        return RegressionHead(in_features, output_size)
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")


def reduce_loss(terms: Tensor, mask: Tensor | None, reduction: str) -> Tensor:
    """Mean (over real items only), sum, or none (padding zeroed) of per-item losses."""
    if mask is not None:
        terms = terms * mask
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.sum() / (mask.sum() if mask is not None else terms.numel())
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# --- shared checks ------------------------------------------------------------------------------
def check_lengths(batch: int, steps: int, lengths, max_length: int | None, what: str = "sequence"):
    """-> lengths as a (B,) long tensor (all T when None); empty or over-long rows are refused."""
    if steps == 0:
        raise ValueError(f"empty {what} (T = 0); every {what} needs at least one step")
    if lengths is None:
        lengths = torch.full((batch,), steps, dtype=torch.long)
    else:
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.shape != (batch,):
            raise ValueError(f"{what} lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        if lengths.min() < 1:
            row = int((lengths < 1).nonzero()[0])
            raise ValueError(f"empty {what} at batch row {row} (length {int(lengths[row])}); "
                             f"drop it or give it at least one step")
        if lengths.max() > steps:
            raise ValueError(f"{what} lengths go up to {int(lengths.max())} but the batch has only {steps} steps")
    if max_length is not None and int(lengths.max()) > max_length:
        raise ValueError(f"{what} of length {int(lengths.max())} is longer than this model's "
                         f"max_length={max_length}; cut it into pieces or build the model with a larger max_length")
    return lengths


def step_mask(lengths: Tensor, steps: int, like: Tensor) -> Tensor:
    """(B, T) with 1 at the real steps of each row and 0 at padding."""
    t = torch.arange(steps, device=like.device).unsqueeze(0)  # (1, T)
    return (t < lengths.to(like.device).unsqueeze(1)).to(like.dtype)  # (B, T)


def top_state(layer, state) -> Tensor:
    """The last layer's final hidden state, both directions side by side: (B, H * dirs)."""
    h = state[0] if isinstance(state, tuple) else state  # (L * dirs, B, H)
    top = h[-layer.num_directions:]  # (dirs, B, H)
    return top.permute(1, 0, 2).reshape(top.shape[1], -1)  # (B, H * dirs)


def zero_padding(target: Tensor, lengths: Tensor, head) -> Tensor:
    """Padding in targets may hold anything (e.g. -1); make it a valid class so the check passes."""
    if head.kind != "classify":
        return target
    keep = step_mask(lengths, target.shape[1], target).bool()  # (B, T)
    return torch.where(keep, target, torch.zeros_like(target))

