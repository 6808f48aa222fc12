"""The five topologies: shapes for every cell, padding invariance, oracles, bad input."""
import pytest
import torch

import unrolled
from conftest import B, D, H, T, V
from unrolled.topologies import top_state

CELLS = ["rnn", "lstm", "gru"]
PATHS = ["fast", "readable", "auto"]
C = 3  # classes; K = 2 regression outputs
K = 2


def ids(batch=B, steps=T, vocab=V):
    return torch.randint(0, vocab, (batch, steps))


# --- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_many_to_one_and_many_to_many(cell, bidirectional):
    for encoding, x in (("dense", torch.randn(B, T, D)), ("onehot", ids(vocab=D)), ("embedding", ids(vocab=D))):
        kw = dict(num_layers=2, encoding=encoding, bidirectional=bidirectional)
        assert unrolled.ManyToOne(D, C, H, cell, **kw)(x).shape == (B, C)
        assert unrolled.ManyToOne(D, K, H, cell, head="regress", **kw)(x).shape == (B, K)
        assert unrolled.ManyToMany(D, C, H, cell, **kw)(x).shape == (B, T, C)
        assert unrolled.ManyToMany(D, K, H, cell, head="regress", **kw)(x).shape == (B, T, K)


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_one_to_one(cell):
    assert unrolled.OneToOne(D, C, H, cell)(torch.randn(B, D)).shape == (B, C)
    assert unrolled.OneToOne(V, K, H, cell, encoding="embedding", head="regress")(torch.randint(0, V, (B,))).shape == (B, K)


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_one_to_many(cell):
    m = unrolled.OneToMany(C, V, H, cell, num_layers=2)
    label = torch.tensor([0, 2])
    assert m(label, ids()).shape == (B, T, V)
    out = m.generate(label, steps=4)
    assert out.shape == (B, 4) and out.dtype == torch.long and int(out.max()) < V
    r = unrolled.OneToMany(D, K, H, cell, input="vector", head="regress", feed_input=False)
    assert r(torch.randn(B, D), torch.randn(B, T, K)).shape == (B, T, K)
    assert r.generate(torch.randn(B, D), steps=4).shape == (B, 4, K)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_encoder_decoder(cell, bidirectional):
    m = unrolled.EncoderDecoder(D, V, H, cell, num_layers=2, bidirectional=bidirectional, max_target_length=6)
    x, y = ids(vocab=D), ids(steps=T + 1)  # source and target of different lengths
    assert m(x, y).shape == (B, T + 1, V)
    assert m(x, y, teacher_forcing=0.5).shape == (B, T + 1, V)
    state = m.encode(x)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, B, H * (2 if bidirectional else 1))
    for out in (m.greedy(x), m.beam_search(x, beam_width=3)):
        assert len(out) == B and all(len(o) <= 6 for o in out)


# --- oracles ------------------------------------------------------------------------------------
def test_one_to_one_is_a_feed_forward_layer():
    """h = tanh(W_ih x + b_ih + b_hh) (W_hh multiplies the zero state), y = W_hy h + b_y."""
    m = unrolled.OneToOne(D, C, H, "rnn").double()
    x = torch.randn(B, D, dtype=torch.float64)
    h = torch.tanh(x @ m.rnn.weight_ih_l0.T + m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0)
    torch.testing.assert_close(m(x), h @ m.head.weight.T + m.head.bias, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_many_to_one_reads_each_rows_last_step_and_the_reverse_first(cell):
    m = unrolled.ManyToOne(V, C, H, cell, encoding="embedding", bidirectional=True).double()
    x, lengths = ids(steps=T), torch.tensor([T, 1])
    out, final = m.rnn(m.encode(x), None, lengths)  # (B, T, 2H)
    want = torch.stack([torch.cat([out[b, lengths[b] - 1, :H], out[b, 0, H:]]) for b in range(B)])
    torch.testing.assert_close(top_state(m.rnn, final), want, rtol=0, atol=1e-12)


def test_encoder_decoder_reverse_source_reads_backwards_within_each_length():
    torch.manual_seed(1)
    m = unrolled.EncoderDecoder(V, V, H, "gru", reverse_source=True).double()
    x, lengths = ids(steps=T), torch.tensor([T, 2])
    flipped = x.clone()
    flipped[0] = x[0].flip(0)
    flipped[1, :2] = x[1, :2].flip(0)
    want = m.encode(x, lengths)
    m.reverse_source = False
    torch.testing.assert_close(m.encode(flipped, lengths), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_no_teacher_forcing_feeds_back_the_argmax(cell):
    """With teacher_forcing=0 the decoder reads its own argmax: the same logits as feeding that argmax."""
    m = unrolled.EncoderDecoder(D, V, H, cell).double()
    x, y = ids(vocab=D), ids(steps=4)
    free = m(x, y, teacher_forcing=0.0)  # (B, 4, V)
    assert torch.equal(free, m(x, torch.randint(0, V, (B, 4)), teacher_forcing=0.0))  # y is never read
    forced = m(x, free.argmax(-1), teacher_forcing=1.0)
    torch.testing.assert_close(forced, free, rtol=0, atol=1e-12)


# --- padding never changes a result ---------------------------------------------------------------
def _rows(lengths):
    return [slice(0, int(n)) for n in lengths]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("path", PATHS)
def test_padding_invariance_many_to_one_and_many_to_many(cell, path):
    lengths = torch.tensor([T, 1, 2])
    x = torch.randint(0, V, (3, T))
    x[1, 1:] = 0
    for bidi, pool in ((False, "last"), (True, "last"), (True, "mean"), (False, "max")):
        m1 = unrolled.ManyToOne(V, C, H, cell, encoding="onehot", bidirectional=bidi, num_layers=2, path=path,
                                pool=pool).double()
        mm = unrolled.ManyToMany(V, C, H, cell, encoding="onehot", bidirectional=bidi, num_layers=2, path=path).double()
        y1, yy = torch.tensor([0, 2, 1]), torch.randint(0, C, (3, T))
        yy[1, 1:] = -1  # padding in targets may hold anything
        batch_out, batch_loss = m1(x, lengths), m1.loss(x, y1, lengths, reduction="sum")
        seq_out, seq_loss = mm(x, lengths), mm.loss(x, yy, lengths, reduction="sum")
        one_loss, many_loss = 0.0, 0.0
        for b, s in enumerate(_rows(lengths)):
            torch.testing.assert_close(m1(x[b:b + 1, s])[0], batch_out[b], rtol=0, atol=1e-12)
            torch.testing.assert_close(mm(x[b:b + 1, s])[0], seq_out[b, s], rtol=0, atol=1e-12)
            one_loss = one_loss + m1.loss(x[b:b + 1, s], y1[b:b + 1], reduction="sum")
            many_loss = many_loss + mm.loss(x[b:b + 1, s], yy[b:b + 1, s], reduction="sum")
        torch.testing.assert_close(batch_loss, one_loss, rtol=0, atol=1e-12)
        torch.testing.assert_close(seq_loss, many_loss, rtol=0, atol=1e-12)
        assert torch.all(seq_out[1, 1:] == mm.head.bias)  # padded steps: zeros into the head


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("path", PATHS)
def test_padding_invariance_one_to_many(cell, path):
    m = unrolled.OneToMany(C, V, H, cell, num_layers=2, path=path).double()
    label, y, lengths = torch.tensor([1, 0, 2]), torch.randint(0, V, (3, T)), torch.tensor([2, T, 1])
    out, loss = m(label, y, lengths), m.loss(label, y, lengths, reduction="sum")
    total = 0.0
    for b, s in enumerate(_rows(lengths)):
        torch.testing.assert_close(m(label[b:b + 1], y[b:b + 1, s])[0], out[b, s], rtol=0, atol=1e-12)
        total = total + m.loss(label[b:b + 1], y[b:b + 1, s], reduction="sum")
    torch.testing.assert_close(loss, total, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("path", PATHS)
def test_padding_invariance_encoder_decoder(cell, path):
    m = unrolled.EncoderDecoder(V, D, H, cell, bidirectional=True, num_layers=2, reverse_source=True,
                                max_target_length=4, path=path).double()
    x, xl = torch.randint(0, V, (3, T + 1)), torch.tensor([T + 1, 1, 2])
    y, yl = torch.randint(0, D, (3, T)), torch.tensor([1, T, 2])
    logits, loss = m(x, y, xl, yl), m.loss(x, y, xl, yl, reduction="sum")
    total = 0.0
    for b in range(3):
        xs, ys = x[b:b + 1, :xl[b]], y[b:b + 1, :yl[b]]
        torch.testing.assert_close(m(xs, ys)[0], logits[b, :yl[b]], rtol=0, atol=1e-12)
        total = total + m.loss(xs, ys, reduction="sum")
    torch.testing.assert_close(loss, total, rtol=0, atol=1e-12)
    assert m.greedy(x, xl) == [m.greedy(x[b:b + 1, :xl[b]])[0] for b in range(3)]
    assert m.beam_search(x, xl, beam_width=3) == [m.beam_search(x[b:b + 1, :xl[b]], beam_width=3)[0]
                                                  for b in range(3)]


def test_mean_loss_averages_over_real_steps_only():
    m = unrolled.ManyToMany(V, C, H, "gru", encoding="embedding").double()
    x, y, lengths = ids(), torch.randint(0, C, (B, T)), torch.tensor([T, 1])
    assert torch.allclose(m.loss(x, y, lengths), m.loss(x, y, lengths, reduction="sum") / (T + 1))
