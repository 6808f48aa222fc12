"""Train the LSTM that docs/understanding.md explores, on the Linux corpus's first 80%.

    python benchmarks/train_linux_lstm.py ../shared/data/linux/kernel.txt runs/linux-lstm-2x128 60

2 layers x 128 LSTM, 64-wide embedding, Adam 3e-3 with cosine decay, batch 32, truncated BPTT
over windows of 128, stopped by wall-clock time (the last argument, in minutes). The split is the
paper's: 80% train, 10% validation, 10% test by position. Equivalent to `unrolled train` with the
same flags; the resolved config is saved in the checkpoint.
"""
import sys

import torch

from unrolled.charlm.trainer import train
from unrolled.errors import UserError
from linux_corpus import have_kernel

USAGE = "usage: python benchmarks/train_linux_lstm.py KERNEL_TXT OUT MINUTES"


def main(argv: list[str]) -> int:
    try:
        corpus, out, minutes = argv[0], argv[1], float(argv[2])
    except (IndexError, ValueError):
        print(USAGE, file=sys.stderr)
        return 2
    if not have_kernel(corpus, "train_linux_lstm.py"):
        return 2
    torch.set_num_threads(1)  # the machine is shared: more threads than free cores only spin
    try:
        result = train(paths=[corpus], cell="lstm", hidden_size=128, num_layers=2, embedding_size=64,
                       batch_size=32, seq_len=128, lr=3e-3, schedule="cosine", max_minutes=minutes,
                       eval_every=500, eval_max_chars=200_000, out=out, seed=1337, progress=False)
    except UserError as e:
        print(f"train_linux_lstm.py: {e}", file=sys.stderr)
        return 2
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
