"""A character n-gram language model with interpolated Kneser-Ney smoothing, orders 1 to 20,
and the error analysis of a recurrent model against it (Karpathy, Johnson, Fei-Fei 2015, 4.4).

Interpolated Kneser-Ney (Chen and Goodman 1998), for a context h of n-1 characters and a next
character w, with h' = h without its first character:

    P_n(w | h) = max(a(hw) - D_n, 0) / b(h)  +  D_n t(h) / b(h) * P_{n-1}(w | h')
    P_0(w)     = 1 / V

and P_n = P_{n-1} when b(h) = 0 (a context never seen). At the highest order a, b, t are plain
counts: a = c(hw), b = c(h .) the times h was followed by anything, t = N1+(h .) the number of
distinct characters that followed h. At every lower order they are continuation counts:
a = N1+(. hw) the number of distinct characters seen *before* hw, b = N1+(. h .) =
sum_w N1+(. hw), t = the number of distinct w with N1+(. hw) > 0. The discount is
D_n = n1 / (n1 + 2 n2) from the number of n-grams seen exactly once and twice (at lower orders
counted in continuation counts), kept in [0.05, 1]. Every P_n sums to one over the V characters
(tests/test_understand_ngram.py checks it), since sum_w a(hw) = b(h) and every seen a >= 1 >= D.

The lower orders' statistics are the same for every top order, so one pass over the orders
gives the test log-probabilities of all the models of order 1..N at once.

Counting: an n-gram is a 64-bit polynomial hash of its characters (mod 2^64), counted by
sorting (`np.unique`) and looked up by binary search: no Python loop over characters, and a
5-million-character corpus at order 20 takes about a minute. Two different n-grams share a
hash with probability about 2^-64 per pair; for the ~10^8 n-grams of such a corpus, a single
collision somewhere is unlikely (< 1e-3) and could move one probability slightly.
"""
from __future__ import annotations

import numpy as np

from unrolled.understand.lexer import lex

_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the rolling hash


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    """counts[keys == q] for each q, 0 when absent; keys sorted."""
    if keys.size == 0:
        return np.zeros(query.shape, dtype=np.float64)
    i = np.searchsorted(keys, query)
    i_c = np.minimum(i, keys.size - 1)
    found = keys[i_c] == query
    return np.where(found, counts[i_c], 0).astype(np.float64)


def _discount(counts: np.ndarray) -> float:
    n1, n2 = float((counts == 1).sum()), float((counts == 2).sum())
    d = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
    return float(min(max(d, 0.05), 1.0))


def _hashes(y: np.ndarray, n: int, prev: np.ndarray | None) -> np.ndarray:
    """H_n[t] = hash of y[t-n+1 .. t] (valid for t >= n-1): H_n[t] = H_{n-1}[t-1] * P + y[t]."""
    if n == 1:
        return y.copy()
    h = np.zeros_like(y)
    with np.errstate(over="ignore"):
        h[1:] = prev[:-1] * _P + y[1:]
    return h


class _Stats:
    """Counts for one order n, as sorted key arrays with their counts."""

    def __init__(self):
        self.tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.discount = {"raw": 0.5, "cont": 0.5}

    def put(self, name, values, counts=None):
        if counts is None:
            keys, counts = np.unique(values, return_counts=True)
        else:
            keys = values
        self.tables[name] = (keys, counts)

    def get(self, name, query):
        keys, counts = self.tables[name]
        return _lookup(keys, counts, query)


def _order_stats(n: int, H_prev, H_cur, H_next, T: int) -> _Stats:
    """Raw counts of order n and continuation counts of order n (from the (n+1)-grams)."""
    st = _Stats()
    t = np.arange(n - 1, T)
    ng = H_cur[t]
    ctx = H_prev[t - 1] if n > 1 else np.zeros(t.size, dtype=np.uint64)
    u_ng, first, c_ng = np.unique(ng, return_index=True, return_counts=True)
    st.put("a_raw", u_ng, c_ng)
    st.put("b_raw", ctx)
    st.put("t_raw", ctx[first])
    st.discount["raw"] = _discount(c_ng)
    if H_next is not None and T > n:
        t1 = np.arange(n, T)
        _, first1 = np.unique(H_next[t1], return_index=True)  # one representative per (n+1)-gram
        rep = t1[first1]
        sfx = H_cur[rep]  # the (n+1)-gram's last n characters: hw
        mid = H_prev[rep - 1] if n > 1 else np.zeros(rep.size, dtype=np.uint64)  # its middle: h
        u_sfx, first_sfx, a_cont = np.unique(sfx, return_index=True, return_counts=True)
        st.put("a_cont", u_sfx, a_cont)
        st.put("b_cont", mid)
        st.put("t_cont", mid[first_sfx])
        st.discount["cont"] = _discount(a_cont)
    else:
        for name in ("a_cont", "b_cont", "t_cont"):
            st.put(name, np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
    return st


def _kn(a, b, t, d, lower):
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.maximum(a - d, 0.0) / b + d * t / b * lower
    return np.where(b > 0, p, lower)


def log_probs(train_ids, test_ids, max_order: int, vocab_size: int) -> np.ndarray:
    """Natural-log probabilities of every test character under the Kneser-Ney models of orders
    1..max_order fitted on `train_ids`: (max_order, len(test)) array, row n-1 for order n.

    The context of test character i is the test characters before it (at most n-1 of them);
    the first characters of the test text use the shorter context they have."""
    if not 1 <= max_order <= 40:
        raise ValueError(f"max_order must be in 1..40, got {max_order}")
    train = np.asarray(train_ids, dtype=np.uint64) + np.uint64(1)  # 0 never names a character
    test = np.asarray(test_ids, dtype=np.uint64) + np.uint64(1)
    if int(np.max(test_ids, initial=0)) >= vocab_size or int(np.max(train_ids, initial=0)) >= vocab_size:
        raise ValueError("character indices must be below vocab_size")
    T, M = train.size, test.size
    out = np.empty((max_order, M), dtype=np.float64)
    lower = np.full(M, 1.0 / vocab_size)  # P_0, then the continuation chain P_{n-1}
    top_prev = lower.copy()
    tr_prev = te_prev = None
    tr_cur, te_cur = _hashes(train, 1, None), _hashes(test, 1, None)
    i = np.arange(M)
    for n in range(1, max_order + 1):
        tr_next = _hashes(train, n + 1, tr_cur) if n < max_order else None
        st = _order_stats(n, tr_prev, tr_cur, tr_next, T)
        q_ng = te_cur
        q_ctx = np.zeros(M, dtype=np.uint64)  # the context of test character i: H_{n-1}[i-1]
        if n > 1:
            q_ctx[1:] = te_prev[:-1]  # (kept uint64: mixing in a Python int would make floats)
        valid = i >= n - 1  # test characters with n-1 characters of context
        top = _kn(st.get("a_raw", q_ng), st.get("b_raw", q_ctx), st.get("t_raw", q_ctx),
                  st.discount["raw"], lower)
        top = np.where(valid, top, top_prev)
        out[n - 1] = np.log(top)
        if n < max_order:
            lower = _kn(st.get("a_cont", q_ng), st.get("b_cont", q_ctx), st.get("t_cont", q_ctx),
                        st.discount["cont"], lower)
            te_next = _hashes(test, n + 1, te_cur)
            tr_prev, tr_cur = tr_cur, tr_next
            te_prev, te_cur = te_cur, te_next
        top_prev = top
    return out


def bits_per_char(logp: np.ndarray) -> np.ndarray:
    """Mean -log2 p over the last axis: bits per character of each row."""
    return -logp.mean(axis=-1) / np.log(2)


# --- error analysis ---------------------------------------------------------------------------
def _far_closers(text: str, far: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of closing brackets whose opening bracket is more than / at most `far` characters back."""
    pairs = {")": "(", "]": "[", "}": "{"}
    far_mask = np.zeros(len(text), dtype=bool)
    near_mask = np.zeros(len(text), dtype=bool)
    stack: list[tuple[str, int]] = []
    for i, ch in enumerate(text):
        if ch in "([{":
            stack.append((ch, i))
        elif ch in pairs:
            if stack and stack[-1][0] == pairs[ch]:
                _, j = stack.pop()
                (far_mask if i - j > far else near_mask)[i] = True
    return far_mask, near_mask


def character_kinds(text: str, language: str = "c", far: int = 40) -> dict[str, np.ndarray]:
    """Masks of the kinds of character the error analysis breaks down by (what is predicted)."""
    lexed = lex(text, language)
    arr = np.array(list(text)) if len(text) else np.zeros(0, dtype="<U1")
    alnum = np.char.isalnum(arr) | (arr == "_")
    prev_alnum = np.concatenate([[False], alnum[:-1]])
    far_mask, near_mask = _far_closers(text, far)
    # A character predicted inside a region is judged by the region it belongs to, which is
    # the lexer's label of the character before it, what the reader knew when predicting it.
    was_comment = np.concatenate([[False], lexed.comment[:-1]])
    was_string = np.concatenate([[False], lexed.string[:-1]])
    return {
        "all": np.ones(len(text), dtype=bool),
        "inside a comment": was_comment,
        "inside a string": was_string,
        "start of a word": alnum & ~prev_alnum,
        "rest of a word": alnum & prev_alnum,
        f"closing bracket, opened > {far} chars back": far_mask,
        f"closing bracket, opened <= {far} chars back": near_mask,
        "newline": arr == "\n",
        "space or tab": (arr == " ") | (arr == "\t"),
        "punctuation": ~alnum & ~np.isin(arr, [" ", "\t", "\n"]) & ~far_mask & ~near_mask,
    }


def error_analysis(text: str, p_model: np.ndarray, p_ngram: np.ndarray, language: str = "c",
                   threshold: float = 0.5, far: int = 40) -> list[dict]:
    """Where two models err, by kind of character. p_model[t], p_ngram[t] are the probabilities
    each gave to character t of `text` (NaN where there was none, e.g. t = 0). An error is a
    probability below `threshold` (the paper's 0.5). One row per kind:
    {"kind", "count", "model_errors", "ngram_errors", "model_only_right", "ngram_only_right",
     "share_of_model_only_right"} with rates as fractions of the kind's characters."""
    ok = np.isfinite(p_model) & np.isfinite(p_ngram)
    m_err, n_err = p_model < threshold, p_ngram < threshold
    gains = ok & ~m_err & n_err
    rows = []
    for kind, mask in character_kinds(text, language, far).items():
        mask = mask & ok
        c = int(mask.sum())
        rate = (lambda x: float((x & mask).sum() / c)) if c else (lambda x: float("nan"))
        rows.append({"kind": kind, "count": c, "model_errors": rate(m_err), "ngram_errors": rate(n_err),
                     "model_only_right": rate(~m_err & n_err), "ngram_only_right": rate(m_err & ~n_err),
                     "share_of_model_only_right": float((gains & mask).sum() / max(1, gains.sum()))})
    return rows
