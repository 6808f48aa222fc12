"""The lecture's "hello" example, learned by the NumPy reference and by unrolled.RNN."""
from unrolled import cli, hello


def test_reference_learns_hello():
    pred, losses = hello.train_reference()
    assert pred == "ello"
    assert losses[-1] < 0.1 * losses[0]


def test_unrolled_rnn_learns_hello():
    pred, losses = hello.train_unrolled()
    assert pred == "ello"
    assert losses[-1] < 0.1 * losses[0]


def test_one_to_one_cannot_learn_hello():
    """Without a recurrence "l" must map to one letter, so at most 3 of 4 predictions are right."""
    import torch

    torch.manual_seed(0)
    x, y = torch.tensor(hello.encode("hell")), torch.tensor(hello.encode("ello"))
    table = torch.zeros(4, 4, requires_grad=True)
    opt = torch.optim.Adam([table], lr=0.1)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(table[x], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert hello.decode(table[x].argmax(-1).tolist()) != "ello"


def test_cli_hello(capsys):
    assert cli.main(["hello"]) == 0
    out = capsys.readouterr().out
    assert out.count("e l l o") == 2
