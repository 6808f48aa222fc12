"""The Kneser-Ney n-gram model: every distribution sums to one, and the vectorised counts
equal a plain dictionary implementation of the same equations."""
from collections import Counter

import numpy as np
import pytest

from unrolled.understand.ngram import bits_per_char, error_analysis, log_probs

TRAIN = "abracadabra, a cab; abba cadabra!\ncab crab dab\n" * 2
CHARS = sorted(set(TRAIN) | {"z"})  # z never occurs in training
IDX = {c: i for i, c in enumerate(CHARS)}
V = len(CHARS)


def ids(s):
    return np.array([IDX[c] for c in s])


def naive_kn(train: str, order: int):
    """P(w | h) by the module's equations, with dictionaries."""
    grams = {n: Counter(train[t - n + 1:t + 1] for t in range(n - 1, len(train))) for n in range(1, order + 2)}
    cont = {n: Counter(g[1:] for g in grams[n + 1]) for n in range(1, order + 1)}  # N1+(. hw)

    def disc(counter):
        n1 = sum(1 for v in counter.values() if v == 1)
        n2 = sum(1 for v in counter.values() if v == 2)
        return min(max(n1 / (n1 + 2 * n2), 0.05), 1.0) if n1 + n2 else 0.5

    D = {(n, top): disc(grams[n] if top else cont[n]) for n in range(1, order + 1) for top in (True, False)}

    def p(h: str, w: str, top: bool = True) -> float:
        n = len(h) + 1
        lower = 1 / V if n == 1 else p(h[1:], w, False)
        table = grams[n] if top else cont[n]
        a = table.get(h + w, 0)
        row = [table.get(h + c, 0) for c in CHARS]
        b, t = sum(row), sum(1 for v in row if v > 0)
        if b == 0:
            return lower
        d = D[(n, top)]
        return max(a - d, 0) / b + d * t / b * lower

    return p


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_matches_the_dictionary_implementation(order):
    test = "cadabra zab abracab"
    got = np.exp(log_probs(ids(TRAIN), ids(test), order, V))  # (order, M)
    for n in range(1, order + 1):
        p = naive_kn(TRAIN, n)
        want = [p(test[max(0, i - n + 1):i], test[i]) for i in range(len(test))]
        np.testing.assert_allclose(got[n - 1], want, rtol=1e-12)


@pytest.mark.parametrize("context", ["", "a", "ab", "abr", "cadabr", "zzz", "b, a c", "xq"[:0] + "ca"])
def test_every_distribution_sums_to_one(context):
    # Score context + w for every character w: the last column is p(w | context) at every order.
    tests = np.stack([ids(context + c) for c in CHARS])  # (V, len + 1)
    p_last = np.stack([np.exp(log_probs(ids(TRAIN), row, 20, V))[:, -1] for row in tests])  # (V, 20)
    np.testing.assert_allclose(p_last.sum(axis=0), np.ones(20), atol=1e-12)
    assert (p_last > 0).all()  # smoothing leaves nothing impossible


def test_higher_orders_fit_repetitive_text_better():
    bpc = bits_per_char(log_probs(ids(TRAIN), ids(TRAIN[:40]), 6, V))
    assert bpc[0] > bpc[2] > bpc[5]


def test_error_analysis_breaks_down_by_kind():
    text = "int x; /* note */ f(a, b);\n"
    p_model = np.full(len(text), 0.9)
    p_ngram = np.full(len(text), 0.9)
    p_model[0] = p_ngram[0] = np.nan
    comment = list(range(9, 17))  # predicted after reading '/*' and up to the closing '/'
    p_ngram[comment] = 0.2  # the n-gram misses the comment, the model does not
    rows = {r["kind"]: r for r in error_analysis(text, p_model, p_ngram, language="c")}
    assert rows["all"]["count"] == len(text) - 1
    assert rows["inside a comment"]["count"] == 8
    assert rows["inside a comment"]["model_only_right"] == 1.0
    assert rows["inside a comment"]["share_of_model_only_right"] == 1.0
    assert rows["all"]["model_errors"] == 0.0
    assert rows["newline"]["count"] == 1 and rows["closing bracket, opened <= 40 chars back"]["count"] == 1
