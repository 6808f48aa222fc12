"""Text in: vocabulary round trips, corpora from files/dirs/globs, bad files, splits, streams."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import B, T
from unrolled.errors import UserError
from unrolled.charlm.text import (TokenStreams, Vocabulary, default_corpus, read_corpus, split, split_bounds,
                           to_tokens)

UNICODE = "naïve café — 東京 😀 e\u0301 Ωmega\n\ttabs"


def test_vocabulary_round_trip_non_ascii():
    v = Vocabulary.from_text(UNICODE)
    assert v.decode(v.encode(UNICODE)) == UNICODE
    assert len(v) == len(set(UNICODE))
    assert v.chars == sorted(set(UNICODE))  # code points, sorted: indices are stable per text
    assert "😀" in v.chars and "\u0301" in v.chars  # one symbol per code point, astral ones too
    assert Vocabulary.from_json(v.to_json()) == v


def test_byte_vocabulary_round_trip():
    data = "grüße".encode("utf-8") + bytes([0xFF, 0x00, 0x80])  # not UTF-8 at the end
    v = Vocabulary.from_text(data)
    assert v.byte_level and len(v) == len(set(data))
    assert bytes(v.symbols[i] for i in v.encode(data)) == data
    assert v.decode(v.encode("grüße")) == "grüße"  # str is encoded as UTF-8 bytes
    assert Vocabulary.from_json(v.to_json()) == v


def test_stream_decoder_waits_for_whole_characters():
    v = Vocabulary.from_text("€".encode("utf-8"))
    ids = v.encode("€")  # three bytes
    dec = v.decoder()
    assert [dec([i]) for i in ids] == ["", "", "€"]


def test_unknown_policies():
    v = Vocabulary.from_text("abc ")
    with pytest.raises(UserError, match=r"'é' \(U\+00E9\)"):
        v.encode("abé", what="--prime")
    assert v.decode(v.encode("abé", unknown="skip")) == "ab"
    assert v.decode(v.encode("abé", unknown="replace")) == "ab "
    assert v.decode(v.encode("abé", unknown="replace", replacement="c")) == "abc"


def test_read_corpus_files_dirs_globs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("B")
    (tmp_path / "d" / "a.txt").write_text("A")
    (tmp_path / "d" / "sub" / "c.txt").write_text("C")
    (tmp_path / "d" / ".hidden").write_text("H")
    (tmp_path / "z.md").write_text("Z")
    assert read_corpus([tmp_path / "d"]) == "ABC"  # sorted, recursive, hidden files skipped
    assert read_corpus([str(tmp_path / "d" / "*.txt")]) == "AB"
    assert read_corpus([tmp_path / "z.md", tmp_path / "d" / "a.txt"]) == "ZA"  # the order given
    assert read_corpus([tmp_path / "z.md"], byte_level=True) == b"Z"


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"abc\x00\x01\x02", "looks binary"),
    (b"caf\xe9", "not UTF-8"),
])
def test_bad_files_are_one_sentence(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_corpus([f])


def test_missing_path_and_empty_glob(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_corpus([tmp_path / "nope.txt"])
    with pytest.raises(UserError, match="matches no files"):
        read_corpus([str(tmp_path / "*.nothing")])


def test_default_corpus_is_deterministic_whole_files(tmp_path):
    for name, body in (("b.py", "bb\n"), ("a.py", "a\n"), ("c.py", "cccc\n"), ("skip.txt", "x")):
        (tmp_path / name).write_text(body)
    assert default_corpus(max_chars=5, stdlib=tmp_path) == "a\nbb\n"  # name order, whole files
    assert default_corpus(max_chars=100, stdlib=tmp_path) == "a\nbb\ncccc\n"
    real = default_corpus(max_chars=50_000)  # the running interpreter's own standard library
    assert 0 < len(real) <= 50_000 and real == default_corpus(max_chars=50_000)


def test_split_by_position():
    tokens = np.arange(100)
    train, val, test = split(tokens)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    np.testing.assert_array_equal(np.concatenate([train, val, test]), tokens)
    assert split_bounds(10, (0.5, 0.5, 0.0)) == (5, 10)


def test_streams_are_contiguous_and_continue_across_windows():
    N = 2 * 3 * T * 2 + 5
    tokens = np.arange(N)
    s = TokenStreams(tokens, B, T)
    n = (N - 1) // B
    assert s.row_len == n and len(s) == n // T
    windows = list(s)
    for k, w in enumerate(windows):
        assert w.x.shape == w.y.shape == (B, T)
        torch.testing.assert_close(w.y[:, :-1], w.x[:, 1:])  # targets are the next symbols
        for b in range(B):
            assert w.x[b, 0].item() == b * n + k * T  # row b is a contiguous slice of the text
    for a, c in zip(windows, windows[1:]):  # row b of window k+1 continues row b of window k
        torch.testing.assert_close(c.x[:, 0], a.x[:, -1] + 1)
        torch.testing.assert_close(c.x[:, 0], a.y[:, -1])


def test_streams_with_stride_overlap_by_k2_minus_k1():
    s = TokenStreams(np.arange(61), 2, 5, stride=2)
    w0, w1 = s.window(0), s.window(1)
    torch.testing.assert_close(w1.x[:, :3], w0.x[:, 2:])


def test_streams_read_a_memmap(tmp_path):
    data = to_tokens(list(range(7)) * 10, 7)
    path = tmp_path / "tokens.bin"
    data.tofile(path)
    mm = np.memmap(path, dtype=data.dtype, mode="r")
    a, b = TokenStreams(mm, B, T), TokenStreams(data, B, T)
    assert len(a) == len(b) > 0
    for wa, wb in zip(a, b):
        torch.testing.assert_close(wa.x, wb.x)


def test_tail_windows_cover_every_prediction_once():
    s = TokenStreams(np.arange(23), 2, 4)
    ys = torch.cat([w.y for w in s.tail_windows(4)], dim=1)  # (B, n)
    assert ys.shape == (2, 11)
    assert ys.flatten().tolist() == list(range(1, 12)) + list(range(12, 23))


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1))
def test_vocabulary_round_trip_any_text(text):
    v = Vocabulary.from_text(text)
    assert v.decode(v.encode(text)) == text
    b = Vocabulary.from_text(text.encode("utf-8", errors="surrogatepass"))
    assert bytes(b.symbols[i] for i in b.encode(text.encode("utf-8", errors="surrogatepass"))) == \
        text.encode("utf-8", errors="surrogatepass")
