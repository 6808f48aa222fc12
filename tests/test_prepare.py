"""Prepared corpora: the streamed token file equals the in-memory encoding."""
import numpy as np
import pytest

from unrolled.charlm import prepare as prep
from unrolled.errors import UserError
from unrolled.charlm.text import TokenStreams, Vocabulary

TEXT = "naïve café — «quotes»\r\n日本語 text 🎉 emoji\n" * 5


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_chunked_prepare_equals_in_memory_encoding(tmp_path, chunk_bytes):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT[:101], encoding="utf-8", newline="")
    b.write_text(TEXT[101:], encoding="utf-8", newline="")
    p = prep.prepare([a, b], tmp_path / "out", chunk_bytes=chunk_bytes)
    vocab = Vocabulary.from_text(TEXT)
    assert p.vocab == vocab
    np.testing.assert_array_equal(np.asarray(p.tokens), np.asarray(vocab.encode(TEXT)))
    assert p.tokens.dtype == np.uint8 and isinstance(p.tokens, np.memmap)
    again = prep.load_prepared(tmp_path / "out")
    assert again.vocab.decode(again.tokens.tolist()) == TEXT


def test_byte_level_prepare(tmp_path):
    f = tmp_path / "bin.dat"
    data = bytes(range(256)) + b"\xff\xfe not utf-8"
    f.write_bytes(data)
    p = prep.prepare([f], tmp_path / "out", byte_level=True, chunk_bytes=5)
    np.testing.assert_array_equal(np.asarray(p.tokens), np.asarray(Vocabulary.from_text(data).encode(data)))


def test_wide_vocabulary_uses_uint16(tmp_path):
    f = tmp_path / "wide.txt"
    f.write_text("".join(chr(0x4E00 + i) for i in range(300)), encoding="utf-8")
    p = prep.prepare([f], tmp_path / "out")
    assert p.tokens.dtype == np.uint16 and len(p.vocab) == 300


def test_streams_read_a_memory_map(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    p = prep.prepare([f], tmp_path / "out")
    mem = TokenStreams(np.asarray(p.vocab.encode(TEXT)), 3, 5)
    mapped = TokenStreams(p.tokens, 3, 5)
    for w1, w2 in zip(mem, mapped):
        assert (w1.x == w2.x).all() and (w1.y == w2.y).all()


def test_bad_inputs_leave_nothing_behind(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff\xfe")
    with pytest.raises(UserError, match="not UTF-8"):
        prep.prepare([bad], tmp_path / "out")
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"abc\x00def")
    with pytest.raises(UserError, match="binary"):
        prep.prepare([nul], tmp_path / "out")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty"):
        prep.prepare([empty], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "empty.txt", "nul.txt"]


def test_truncated_or_foreign_token_files_are_refused(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    prep.prepare([f], out)
    with open(out / "tokens.bin", "r+b") as h:
        h.truncate(10)
    with pytest.raises(UserError, match="truncated"):
        prep.load_prepared(out)
    with pytest.raises(UserError, match="not a prepared corpus"):
        prep.load_prepared(tmp_path)


def test_cli_prepare(tmp_path, capsys):
    from unrolled import cli

    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    assert cli.main(["prepare", str(f), "--out", str(tmp_path / "out")]) == 0
    assert "prepared" in capsys.readouterr().out
    assert cli.main(["prepare", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unrolled: error: ") and "does not exist" in err and err.count("\n") == 1
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o2.partial").exists()


def test_prepared_checksum_is_the_training_fingerprint(tmp_path):
    from unrolled.charlm.data import fingerprint

    f = tmp_path / "t.txt"
    f.write_text(TEXT * 3, encoding="utf-8")
    p = prep.prepare([f], tmp_path / "out", chunk_bytes=16)
    assert fingerprint(np.asarray(p.vocab.encode(TEXT * 3), dtype=p.tokens.dtype)) == \
        {"chars": p.meta["tokens"], "crc32": p.meta["crc32"]}
