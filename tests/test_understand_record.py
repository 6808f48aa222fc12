"""Recording: the batched, state-carrying recorder equals the step-by-step readable path."""
import numpy as np
import pytest
import torch

from unrolled.cli import main
from unrolled.understand import load_recording, record, save_recording
from understand_standin import StandInLM

TEXT = "int f(x) { return \"a<b\"; } /* c */\n" * 3  # 105 characters, 7+ distinct


@torch.no_grad()
def readable_trace(model, text, start, stop, warm_from=None):
    """The plain loop over text[warm_from or start : stop] from a zero state: every (T, H)."""
    ids = torch.tensor([model.vocab.encode(text[warm_from if warm_from is not None else start:stop])])
    out, _, trace = model.rnn.readable(model.embed(ids), None, record=True)
    logp = torch.log_softmax(model.head(out), -1)[0]  # (T, V)
    return trace, logp


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_one_stream_equals_the_plain_loop(kind):
    model = StandInLM(TEXT, kind).double()
    rec = record(model, TEXT, streams=1, window=7)
    trace, logp = readable_trace(model, TEXT, 0, len(TEXT))
    for l in range(2):
        for key, v in trace[l].items():
            np.testing.assert_allclose(rec.states[f"{key}{l}"], v[0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(rec.probs, logp.exp().numpy(), atol=1e-6)
    ids = model.vocab.encode(TEXT)
    want = logp[torch.arange(len(TEXT) - 1), ids[1:]].numpy()
    np.testing.assert_allclose(rec.logp_next[:-1], want, atol=1e-6)
    assert np.isnan(rec.logp_next[-1])


@pytest.mark.parametrize("warmup", [0, 5])
def test_parallel_streams_carry_state_across_windows(warmup):
    model = StandInLM(TEXT, "lstm").double()
    keep = np.array([0, 3, 34, 35, 36, 70, 71, 104])
    rec = record(model, TEXT, streams=3, window=4, warmup=warmup, positions=keep)
    Ls = rec.meta["stream_length"]
    assert rec.meta["streams"] == 3 and Ls == 35
    for k, p in enumerate(keep):
        s = p // Ls
        warm = max(0, s * Ls - warmup) if s else 0
        trace, logp = readable_trace(model, TEXT, s * Ls, p + 1, warm_from=warm)
        for l in range(2):
            for key in ("h", "c", "f"):
                np.testing.assert_allclose(rec.states[f"{key}{l}"][k], trace[l][key][0, -1].numpy(), atol=1e-6)
        np.testing.assert_allclose(rec.probs[k], logp[-1].exp().numpy(), atol=1e-6)


def test_save_and_load_both_formats(tmp_path):
    model = StandInLM(TEXT, "gru")
    rec = record(model, TEXT, keys=("h", "z"), streams=2)
    for name in ("r.npz", "r.safetensors"):
        back = load_recording(save_recording(rec, tmp_path / name))
        assert back.text == TEXT and back.chars == rec.chars and back.kind == "gru"
        assert set(back.states) == {"h0", "h1", "z0", "z1"}
        np.testing.assert_array_equal(back.states["z1"], rec.states["z1"])
        np.testing.assert_array_equal(back.probs, rec.probs)
        np.testing.assert_array_equal(back.positions, rec.positions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npz", "r.safetensors"]


def test_units_and_bad_input():
    model = StandInLM(TEXT, "lstm")
    rec = record(model, TEXT[:20])
    values, names = rec.units(("c",))
    assert values.shape == (20, 10) and names[0] == "c0:0" and names[-1] == "c1:4"
    np.testing.assert_array_equal(rec.unit("c1:4"), values[:, -1])
    with pytest.raises(Exception, match="never saw"):
        record(model, "int \u00e9")
    with pytest.raises(Exception, match="records h, c"):
        record(model, TEXT, keys=("z",))
